// Package suggest finds the likely intended word for a typo, for "did you
// mean" hints in configuration errors.
package suggest

// maxLen bounds the words compared: longer input is no typo, and the
// distance is quadratic.
const maxLen = 128

// Closest returns the candidate within edit distance 2 of word, the
// closest first found, or "" when none is that close.
func Closest(word string, candidates []string) string {
	if len(word) > maxLen {
		return ""
	}
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := distance(word, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
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
