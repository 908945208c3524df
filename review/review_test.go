package review

import (
	"testing"

	"github.com/veil-dp/veil/internal/distance"
)

func TestTokenDistance(t *testing.T) {
	a := sqlTokens("SELECT district, COUNT(*) FROM r WHERE age > 30 GROUP BY district")
	cases := []struct {
		q    string
		want int
	}{
		{"select district, count(*) from r where age > 30 group by district", 0},
		{"SELECT district, COUNT(*) FROM r WHERE age > 31 GROUP BY district", 1},
		{"SELECT district, COUNT(*) FROM r WHERE age >= 30 GROUP BY district", 1},
		{"SELECT district, COUNT(*) FROM r GROUP BY district", 4},
	}
	for _, tc := range cases {
		if got := distance.Levenshtein(a, sqlTokens(tc.q)); got != tc.want {
			t.Errorf("distance to %q = %d, want %d", tc.q, got, tc.want)
		}
	}
}
