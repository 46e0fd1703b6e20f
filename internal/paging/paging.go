// Package paging holds the page-size rules shared by the stores' listings
// and the HTTP API that serves them, so that the two cannot disagree.
package paging

// MaxLimit bounds one page of any listing: documents, history, webhook
// deliveries.
const MaxLimit = 1000

// DefaultLimit is the page size the HTTP API uses when none is asked for.
const DefaultLimit = 100

// Clamp returns limit if it is a valid page size (1 to MaxLimit), and
// MaxLimit otherwise: stores treat a zero, negative or too large limit as
// "a full page".
func Clamp(limit int) int {
	if limit <= 0 || limit > MaxLimit {
		return MaxLimit
	}
	return limit
}
