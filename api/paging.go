package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/tandem-sync/tandem/internal/paging"
)

// pageQuery reads a listing's query: its limit (1 to paging.MaxLimit,
// default paging.DefaultLimit), and its cursor, which, when present, it
// hands to parse. A malformed limit or a cursor parse refuses is an
// invalid_limit or invalid_cursor error.
func pageQuery(r *http.Request, parse func(cursor string) error) (int, error) {
	q := r.URL.Query()
	limit := paging.DefaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > paging.MaxLimit {
			return 0, errorf(http.StatusBadRequest, "invalid_limit", fmt.Sprintf("limit must be 1 to %d", paging.MaxLimit))
		}
		limit = n
	}
	if v := q.Get("cursor"); v != "" {
		if err := parse(v); err != nil {
			return 0, errorf(http.StatusBadRequest, "invalid_cursor", "cursor is not a value from a previous page")
		}
	}
	return limit, nil
}

// nonNegative parses a numeric cursor.
func nonNegative(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err == nil && n < 0 {
		err = errors.New("negative")
	}
	return n, err
}
