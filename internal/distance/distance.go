// Package distance is the edit distance Veil's "did you mean" hints and the review's
// comparison of queries share: the Levenshtein distance of two sequences of any comparable
// elements (runes of a name, tokens of a query).
//
// Package distance imports nothing of Veil and does no I/O.
package distance

// Levenshtein is the least number of insertions, deletions and substitutions of one element
// that turn a into b. It takes O(len(a)·len(b)) time and O(len(b)) memory.
func Levenshtein[E comparable](a, b []E) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Strings is the Levenshtein distance of a and b counted in runes (a character typed wrong
// is one edit, whatever its UTF-8 length).
func Strings(a, b string) int {
	return Levenshtein([]rune(a), []rune(b))
}
