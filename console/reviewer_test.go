package console

import "testing"

func TestSummarize(t *testing.T) {
	cols := []string{"district", "n", "mixed"}
	rows := [][]any{{"north", 60.0, 1.0}, {"south", 35.0, "x"}, {nil, 5.0, nil}}
	got := summarize(cols, rows)
	want := []summary{
		{Column: "district", Values: 2, Nulls: 1, Numeric: false, Distinct: 2},
		{Column: "n", Values: 3, Numeric: true, Min: 5, Max: 60, Sum: 100, Distinct: 3},
		{Column: "mixed", Values: 2, Nulls: 1, Numeric: false, Min: 1, Max: 1, Sum: 1, Distinct: 2},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("column %s: %+v, want %+v", cols[i], got[i], want[i])
		}
	}
	if s := summarize([]string{"a"}, [][]any{{}}); s[0].Nulls != 1 || s[0].Numeric {
		t.Errorf("a short row: %+v", s[0])
	}
}

func TestParseReport(t *testing.T) {
	rep := parseReport([]byte(`{"columns":[{"column":"n","noise_scale":2,"ci":[1,3]},{"column":"s","epsilon":0.5}],"partition_selection":{"epsilon":0.1}}`))
	if rep == nil || len(rep.Columns) != 2 || len(rep.Keys) != 4 || rep.Other["partition_selection"] == nil {
		t.Fatalf("%+v", rep)
	}
	if parseReport(nil) != nil || parseReport([]byte("not json")) != nil {
		t.Fatal("a missing or bad report parsed")
	}
}
