package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The headers of a webhook request.
const (
	// HeaderEventID carries the event's ID (as the body's "id").
	HeaderEventID = "Tandem-Event-Id"
	// HeaderTimestamp carries the time of the attempt, in unix seconds.
	HeaderTimestamp = "Tandem-Timestamp"
	// HeaderSignature carries the signature: "v1=" and the hex
	// HMAC-SHA256 of timestamp + "." + body, keyed with the secret.
	HeaderSignature = "Tandem-Signature"
)

// DefaultTolerance is a sensible Verify tolerance: how far a request's
// timestamp may be from the receiver's clock.
const DefaultTolerance = 5 * time.Minute

// ErrSignature is wrapped by Verify's errors.
var ErrSignature = errors.New("webhook: bad signature")

// Sign returns the Tandem-Signature header value for body sent at
// timestamp (unix seconds): "v1=" followed by the lower-case hex
// HMAC-SHA256 of the timestamp in decimal, ".", and body, keyed with secret.
func Sign(secret []byte, timestamp int64, body []byte) string {
	return "v1=" + hex.EncodeToString(mac(secret, strconv.FormatInt(timestamp, 10), body))
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a webhook request as a receiver should: header is its
// Tandem-Signature header, timestamp its Tandem-Timestamp header and body
// the raw body, unparsed. It succeeds if one of the header's
// comma-separated "v1=<hex>" signatures matches (so that a sender can sign
// with an old and a new secret while they rotate) and the timestamp is
// within tolerance of now (tolerance <= 0 means DefaultTolerance), which
// stops old requests being replayed. Errors wrap ErrSignature.
func Verify(secret []byte, header string, timestamp string, body []byte, tolerance time.Duration, now time.Time) error {
	ts, err := strconv.ParseInt(strings.TrimSpace(timestamp), 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not unix seconds", ErrSignature, timestamp)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if skew := now.Sub(time.Unix(ts, 0)).Abs(); skew > tolerance {
		return fmt.Errorf("%w: timestamp is %s away from now, more than %s", ErrSignature, skew.Round(time.Second), tolerance)
	}
	want := mac(secret, strings.TrimSpace(timestamp), body)
	var seen bool
	for part := range strings.SplitSeq(header, ",") {
		scheme, sig, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || scheme != "v1" {
			continue
		}
		seen = true
		got, err := hex.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	if !seen {
		return fmt.Errorf("%w: no v1 signature in %q", ErrSignature, header)
	}
	return fmt.Errorf("%w: no signature matches", ErrSignature)
}
