package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// examples are the Example of every command that has none of its own, by command path
// without "veil ". TestEveryCommandHasExample keeps the list complete.
var examples = map[string]string{
	"backup":                   "veil backup --data-dir /var/lib/veil --to /backup/veil-2026-12-02",
	"restore":                  "veil restore --from /backup/veil-2026-12-02 --data-dir /var/lib/veil-restored --checkpoint kept.checkpoint",
	"key":                      "veil key rotate --data-dir /var/lib/veil",
	"key rotate":               "veil key rotate --data-dir /var/lib/veil",
	"principal rotate":         "veil principal rotate p-xxxxxxxxxxxx --grace 24h",
	"audit":                    "veil audit tail -n 5",
	"audit checkpoint":         "veil audit checkpoint -o checkpoint-2026-12.json",
	"audit prove":              "veil audit prove 42",
	"audit tail":               "veil audit tail -n 50 -o json",
	"audit verify":             "veil audit verify --since checkpoint-2026-11.json",
	"audit witness":            "veil audit witness --witness-key witness.key --state witness.state --init",
	"audit witness keygen":     "veil audit witness keygen --name city-archive --out witness.key",
	"bench":                    "veil bench --rows 1000000 --units 100000 --reps 3 --only dp",
	"budget":                   "veil budget show",
	"budget show":              "veil budget show -o json",
	"config":                   "veil config list",
	"config current":           "veil config current",
	"config delete":            "veil config delete staging",
	"config list":              "veil config list",
	"config set-profile":       "veil config set-profile acme --host unix:///var/lib/veil/veil.sock --token-file ~/.veil/acme.token",
	"config use":               "veil config use acme",
	"dataset":                  "veil dataset list",
	"dataset feedback list":    "veil dataset feedback list --status open",
	"dataset feedback resolve": `veil dataset feedback resolve f-xxxxxxxxxxxx --note "fixed in the next version"`,
	"dataset list":             "veil dataset list -o yaml",
	"dataset register":         "veil dataset register --schema residents.yaml residents.csv",
	"dataset show":             "veil dataset show residents",
	"dataset synthesize":       "veil dataset synthesize residents --epsilon 1 --pair district,sex",
	"dataset twin":             "veil dataset twin residents --masked --rows 1000",
	"dev":                      "veil dev run --grant g-xxxxxxxxxxxx --sql \"SELECT district, COUNT(*) FROM residents GROUP BY district\"",
	"dev promote":              "veil dev promote j-xxxxxxxxxxxx",
	"dev run":                  "veil dev run --grant g-xxxxxxxxxxxx --epsilon 0.5 --sql \"SELECT district, COUNT(*) FROM residents GROUP BY district\"",
	"dev show":                 "veil dev show j-xxxxxxxxxxxx",
	"doctor":                   "veil doctor --data-dir /var/lib/veil",
	"export":                   "veil export get j-xxxxxxxxxxxx -o result.csv",
	"export get":               "veil export get j-xxxxxxxxxxxx -o result.csv",
	"export verify":            "veil export verify result.csv.cert.json",
	"fusion":                   "veil fusion upload --grant g-xxxxxxxxxxxx --name customers --key phone --match residents.phone customers.csv",
	"fusion approve":           "veil fusion approve fusion_acme_customers",
	"fusion upload":            "veil fusion upload --grant g-xxxxxxxxxxxx --name customers --key phone --match residents.phone customers.csv",
	"grant":                    "veil grant list",
	"grant approve":            "veil grant approve g-xxxxxxxxxxxx",
	"grant list":               "veil grant list -o json",
	"grant reinstate":          `veil grant reinstate g-xxxxxxxxxxxx --reason "the audit finding is resolved"`,
	"grant reject":             `veil grant reject g-xxxxxxxxxxxx --reason "the purpose does not need person-level income"`,
	"grant revoke":             `veil grant revoke g-xxxxxxxxxxxx --reason "the project ended"`,
	"grant show":               "veil grant show g-xxxxxxxxxxxx",
	"grant suspend":            `veil grant suspend g-xxxxxxxxxxxx --reason "under audit"`,
	"he":                       "veil he keygen --groups 16 --dir keys/",
	"he decrypt":               "veil he decrypt --secret keys/secret.key --in scores.export --out result.csv",
	"he encrypt-model":         "veil he encrypt-model --public keys/public.bundle --model model.json --out model.enc",
	"he keygen":                "veil he keygen --groups 16 --dir keys/",
	"init":                     "veil init --data-dir /var/lib/veil",
	"job":                      "veil job list --status review",
	"job cancel":               "veil job cancel j-xxxxxxxxxxxx",
	"job list":                 "veil job list --grant g-xxxxxxxxxxxx --status queued,running",
	"job plan":                 "veil job plan --grant g-xxxxxxxxxxxx --epsilon 0.5 --sql \"SELECT district, COUNT(*) AS persons FROM residents GROUP BY district\"",
	"job show":                 "veil job show j-xxxxxxxxxxxx",
	"job submit": "veil job submit --grant g-xxxxxxxxxxxx --wait --sql \"SELECT district, COUNT(*) FROM residents GROUP BY district\"\n" +
		"  veil job submit --grant g-xxxxxxxxxxxx --epsilon 0.5 --dry-run --sql \"SELECT district, AVG(income) FROM residents GROUP BY district\"",
	"platform":              "veil platform key",
	"platform key":          "veil platform key -o json",
	"principal":             "veil principal list",
	"principal create":      `veil principal create --name "acme analyst" --role vendor --tenant acme`,
	"principal list":        "veil principal list",
	"principal revoke":      "veil principal revoke p-xxxxxxxxxxxx",
	"review":                "veil review list",
	"review approve":        "veil review approve j-xxxxxxxxxxxx --digest sha256:...",
	"review list":           "veil review list",
	"review reject":         `veil review reject j-xxxxxxxxxxxx --reason "the groups are too small to publish"`,
	"review show":           "veil review show j-xxxxxxxxxxxx",
	"runtime":               "veil runtime list",
	"runtime list":          "veil runtime list",
	"runtime register":      "veil runtime register --name python-3.12 --rootfs python.tar.gz --entrypoint /usr/bin/python3",
	"serve":                 "veil serve --data-dir /var/lib/veil --listen 127.0.0.1:8470 --tls-cert tls.crt --tls-key tls.key",
	"version":               "veil version -o json",
	"whoami":                "veil whoami",
	"zone":                  "veil zone set Asia/Shanghai",
	"zone show":             "veil zone show",
	"zone set":              "veil zone set Asia/Shanghai",
	"completion":            "source <(veil completion bash)",
	"completion bash":       "source <(veil completion bash)",
	"completion zsh":        "veil completion zsh > \"${fpath[1]}/_veil\"",
	"completion fish":       "veil completion fish | source",
	"completion powershell": "veil completion powershell | Out-String | Invoke-Expression",
}

// addExamples gives every command without an Example its entry of examples.
func addExamples(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		addExamples(c)
	}
	if cmd.Example != "" {
		return
	}
	path := strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
	if ex, ok := examples[path]; ok {
		cmd.Example = "  " + ex
	}
}
