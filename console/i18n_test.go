package console

import (
	"io/fs"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestEveryTextTranslated finds every English text the pages and the handlers use and
// checks that zh-CN has it: no page is half in English.
func TestEveryTextTranslated(t *testing.T) {
	var texts []string
	tmpl := regexp.MustCompile(`\{\{tf? "([^"]+)"|\(t "([^"]+)"\)`)
	names, _ := fs.Glob(assets, "templates/*.html")
	for _, n := range names {
		b, _ := fs.ReadFile(assets, n)
		for _, m := range tmpl.FindAllStringSubmatch(string(b), -1) {
			texts = append(texts, m[1]+m[2])
		}
	}
	code := regexp.MustCompile(`tr\((?:lang|c\.lang\(r\))\s*,\s*"([^"]+)"\)`)
	gos, _ := fs.Glob(os.DirFS("."), "*.go")
	for _, n := range gos {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range code.FindAllStringSubmatch(string(b), -1) {
			texts = append(texts, m[1])
		}
	}
	for _, v := range notes {
		texts = append(texts, v)
	}
	for _, v := range roleHome {
		texts = append(texts, v)
	}
	texts = append(texts, "reviewer", "vendor", "provider", "authority", "auditor", "operator", "pending", "active", "rejected",
		"suspended", "revoked", "expired", "approve", "reject", "suspend", "reinstate", "revoke")
	texts = append(texts, jobStates...)
	if len(texts) < 100 {
		t.Fatalf("found only %d texts: the patterns no longer match the templates", len(texts))
	}
	for _, x := range texts {
		if _, ok := zh[x]; !ok {
			t.Errorf("no zh-CN text for %q", x)
		}
	}
}

func TestLanguageChoice(t *testing.T) {
	c := &Console{}
	for _, tc := range []struct{ accept, cookie, want string }{
		{"zh-CN,zh;q=0.9,en;q=0.8", "", "zh-CN"},
		{"en-GB,en;q=0.9", "", "en"},
		{"fr-FR, zh-TW;q=0.5", "", "zh-CN"},
		{"fr-FR", "", "en"},
		{"zh-CN", "en", "en"},
		{"en", "zh-CN", "zh-CN"},
		{"en", "klingon", "en"},
	} {
		r, _ := http.NewRequest("GET", "/ui/", nil)
		r.Header.Set("Accept-Language", tc.accept)
		if tc.cookie != "" {
			r.AddCookie(&http.Cookie{Name: langCookie, Value: tc.cookie})
		}
		if got := c.lang(r); got != tc.want {
			t.Errorf("Accept-Language %q, cookie %q: %s, want %s", tc.accept, tc.cookie, got, tc.want)
		}
	}
}

func TestTemplatesParse(t *testing.T) {
	c := &Console{}
	if err := c.parse(); err != nil {
		t.Fatal(err)
	}
	for _, l := range langs {
		for _, p := range []string{"signin", "error", "reviews", "review", "grant", "vendor", "job", "provider", "dataset", "authority", "audit", "proof", "operator"} {
			if c.pages[l][p] == nil {
				t.Errorf("%s: no page %s", l, p)
			}
		}
	}
}
