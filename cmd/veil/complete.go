package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/internal/distance"
)

// Shell completion (veil completion bash|zsh|fish|powershell): ids come from the daemon
// the command line names (its --host, --token, --profile), as the caller may see them;
// profiles from the config file; modes and formats are fixed lists.

// completeWith is a completion function that lists what list returns; an error (no daemon,
// no token) completes nothing rather than printing it.
func completeWith(list func(ctx context.Context, c *client.Client) ([]string, error)) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		c, err := connect()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
		defer cancel()
		ids, err := list(ctx, c)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, id := range ids {
			if strings.HasPrefix(id, prefix) {
				out = append(out, id)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// firstArg completes only a command's first argument.
func firstArg(f cobra.CompletionFunc) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return f(cmd, args, prefix)
	}
}

func grantIDs(ctx context.Context, c *client.Client) ([]string, error) {
	gs, err := c.Grants(ctx)
	var out []string
	for _, g := range gs {
		if id, ok := g["id"].(string); ok {
			out = append(out, fmt.Sprintf("%s\t%v", id, g["scenario"]))
		}
	}
	return out, err
}

func jobIDs(ctx context.Context, c *client.Client) ([]string, error) {
	js, err := c.Jobs(ctx, "", "")
	return jobList(js), err
}

func reviewIDs(ctx context.Context, c *client.Client) ([]string, error) {
	js, err := c.Reviews(ctx)
	return jobList(js), err
}

func jobList(js []api.Job) []string {
	var out []string
	for _, j := range js {
		out = append(out, j.ID+"\t"+j.Status)
	}
	return out
}

func datasetNames(ctx context.Context, c *client.Client) ([]string, error) {
	ds, err := c.Datasets(ctx)
	var out []string
	for _, d := range ds {
		out = append(out, d.Name)
	}
	return out, err
}

func profileNames(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
	cfg, err := loadConfig()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for name := range cfg.Profiles {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completions wires the completion functions into the command tree: argument completions
// by command path, flag completions wherever the flag is defined.
func completions(root *cobra.Command) {
	args := map[string]cobra.CompletionFunc{
		"job show": completeWith(jobIDs), "job cancel": completeWith(jobIDs),
		"dev show": completeWith(jobIDs), "dev promote": completeWith(jobIDs),
		"review show": completeWith(reviewIDs), "review approve": completeWith(reviewIDs), "review reject": completeWith(reviewIDs),
		"export get": completeWith(jobIDs),
		"grant show": completeWith(grantIDs), "grant approve": completeWith(grantIDs), "grant reject": completeWith(grantIDs),
		"grant suspend": completeWith(grantIDs), "grant reinstate": completeWith(grantIDs), "grant revoke": completeWith(grantIDs),
		"dataset show": completeWith(datasetNames), "dataset twin": completeWith(datasetNames), "dataset synthesize": completeWith(datasetNames),
		"dataset feedback": completeWith(datasetNames),
		"config use":       profileNames, "config delete": profileNames,
	}
	fixed := func(vals ...string) cobra.CompletionFunc {
		return func(_ *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
			var out []string
			for _, v := range vals {
				if strings.HasPrefix(v, prefix) {
					out = append(out, v)
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		}
	}
	flags := map[string]cobra.CompletionFunc{
		"grant":   completeWith(grantIDs),
		"dataset": completeWith(datasetNames),
		"mode":    fixed("threshold", "dp", "he", "model", "custom"),
		"noise":   fixed("laplace", "gaussian"),
		"role":    fixed("provider", "operator", "authority", "vendor", "reviewer", "auditor"),
		"status":  fixed("queued", "running", "review", "released", "rejected", "failed", "canceled", "dev", "open", "resolved"),
	}
	root.RegisterFlagCompletionFunc("profile", profileNames)
	root.RegisterFlagCompletionFunc("output", fixed("table", "json", "yaml"))
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		if f, ok := args[path]; ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = firstArg(f)
		}
		c.LocalNonPersistentFlags().VisitAll(func(fl *pflag.Flag) {
			if f, ok := flags[fl.Name]; ok {
				c.RegisterFlagCompletionFunc(fl.Name, f)
			}
		})
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}

// flagError is cobra's flag error with, for an unknown flag, the closest flag the command
// has: "unknown flag: --epsilion (did you mean --epsilon?)".
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	name, ok := strings.CutPrefix(msg, "unknown flag: --")
	if !ok {
		return &exitError{exitUsage, err}
	}
	best, bestD := "", 0
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if d := distance.Strings(name, f.Name); best == "" || d < bestD {
			best, bestD = f.Name, d
		}
	})
	if best != "" && bestD <= max(2, len(name)/3) {
		return &exitError{exitUsage, fmt.Errorf("%s (did you mean --%s?)", msg, best)}
	}
	return &exitError{exitUsage, err}
}
