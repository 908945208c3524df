package distance

import "testing"

func TestLevenshtein(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"", "abc", 3}, {"abc", "", 3}, {"epsilon", "epsilion", 1}, {"kitten", "sitting", 3},
		{"district", "distirct", 2}, {"区县", "区", 1}, {"Origin State", "Origin State", 0},
	} {
		if got := Strings(c.a, c.b); got != c.want {
			t.Errorf("Strings(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := Strings(c.b, c.a); got != c.want {
			t.Errorf("Strings(%q, %q) = %d, want %d (symmetric)", c.b, c.a, got, c.want)
		}
	}
	if got := Levenshtein([]string{"SELECT", "a", "FROM", "t"}, []string{"SELECT", "b", "FROM", "t", "WHERE"}); got != 2 {
		t.Errorf("token distance = %d, want 2", got)
	}
}
