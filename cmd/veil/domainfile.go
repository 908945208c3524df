package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/veil-dp/veil/policy"
)

// maxDomainFileBytes bounds a domain file.
const maxDomainFileBytes = 1 << 20

// resolveDomainFiles replaces every column's domain {file: PATH} in a schema file with the
// file's values (one a line; blank lines skipped; a path relative to the schema's directory),
// so that the daemon, which need not share a filesystem with the provider, gets the values.
// A schema without such a domain is returned unchanged, byte for byte.
func resolveDomainFiles(schema []byte, dir string) ([]byte, error) {
	if !bytes.Contains(schema, []byte("file")) {
		return schema, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(schema, &doc); err != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return schema, nil // the daemon reports what is wrong with it
	}
	changed := false
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "columns" || root.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		for _, col := range root.Content[i+1].Content {
			if col.Kind != yaml.MappingNode {
				continue
			}
			for j := 0; j+1 < len(col.Content); j += 2 {
				d := col.Content[j+1]
				if col.Content[j].Value != "domain" || d.Kind != yaml.MappingNode || len(d.Content) != 2 || d.Content[0].Value != "file" {
					continue
				}
				path := d.Content[1].Value
				if !filepath.IsAbs(path) {
					path = filepath.Join(dir, path)
				}
				vals, err := readDomainFile(path)
				if err != nil {
					return nil, err
				}
				seq := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
				for _, v := range vals {
					seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v, Style: yaml.DoubleQuotedStyle})
				}
				col.Content[j+1] = seq
				changed = true
			}
		}
	}
	if !changed {
		return schema, nil
	}
	return yaml.Marshal(&doc)
}

func readDomainFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("domain file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDomainFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("domain file %s: %w", filepath.Base(path), err)
	}
	if len(data) > maxDomainFileBytes {
		return nil, fmt.Errorf("domain file %s is larger than %d bytes; a domain holds at most %d values", filepath.Base(path), maxDomainFileBytes, policy.MaxDomainValues)
	}
	var vals []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), maxDomainFileBytes)
	for sc.Scan() {
		v := strings.TrimSpace(strings.TrimSuffix(sc.Text(), "\r"))
		if v == "" || seen[v] {
			continue
		}
		seen[v] = true
		vals = append(vals, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("domain file %s: %w", filepath.Base(path), err)
	}
	if len(vals) == 0 || len(vals) > policy.MaxDomainValues {
		return nil, fmt.Errorf("domain file %s holds %d values; give between 1 and %d, one a line", filepath.Base(path), len(vals), policy.MaxDomainValues)
	}
	return vals, nil
}
