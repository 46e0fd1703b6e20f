package wire

import "unicode/utf8"

// excerptLen is how much of an untrusted string an error message quotes.
const excerptLen = 80

// Excerpt returns s, or its first 80 bytes (cut on a character boundary)
// and an ellipsis when it is longer: for quoting untrusted input, such as a
// document ID or a head a client sent, in an error message.
func Excerpt(s string) string {
	if len(s) <= excerptLen {
		return s
	}
	n := excerptLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
