package webhook

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	t.Parallel()
	secret := []byte("s3cret")
	body := []byte(`{"id":1,"type":"document.changed"}`)
	now := time.Unix(1_800_000_000, 0)
	ts := now.Unix()
	sig := Sign(secret, ts, body)
	// HMAC-SHA256("s3cret", "1800000000." + body), computed independently
	// (printf '%s' '1800000000.{"id":1,"type":"document.changed"}' |
	// openssl dgst -sha256 -hmac s3cret).
	const want = "v1=90886d92945088b3507632f642525b5f014b4f536a1f7d96c2d881fcb8767344"
	if sig != want {
		t.Fatalf("Sign = %q, want %q", sig, want)
	}
	stamp := strconv.FormatInt(ts, 10)
	for _, tc := range []struct {
		name      string
		secret    []byte
		header    string
		timestamp string
		body      []byte
		tolerance time.Duration
		now       time.Time
		ok        bool
	}{
		{"round trip", secret, sig, stamp, body, time.Minute, now, true},
		{"default tolerance", secret, sig, stamp, body, 0, now.Add(4 * time.Minute), true},
		{"a little late", secret, sig, stamp, body, time.Minute, now.Add(59 * time.Second), true},
		{"clock behind", secret, sig, stamp, body, time.Minute, now.Add(-30 * time.Second), true},
		{"rotation: one of several matches", secret, "v1=00ff, " + sig + ",v0=abc", stamp, body, time.Minute, now, true},
		{"wrong secret", []byte("other"), sig, stamp, body, time.Minute, now, false},
		{"empty secret", nil, sig, stamp, body, time.Minute, now, false},
		{"tampered body", secret, sig, stamp, append([]byte(nil), append(body, ' ')...), time.Minute, now, false},
		{"other timestamp", secret, sig, strconv.FormatInt(ts+1, 10), body, time.Minute, now, false},
		{"stale", secret, sig, stamp, body, time.Minute, now.Add(61 * time.Second), false},
		{"stale by default", secret, sig, stamp, body, 0, now.Add(6 * time.Minute), false},
		{"from the future", secret, sig, stamp, body, time.Minute, now.Add(-2 * time.Minute), false},
		{"timestamp not a number", secret, sig, "yesterday", body, time.Minute, now, false},
		{"no header", secret, "", stamp, body, time.Minute, now, false},
		{"unknown scheme", secret, "v2=" + sig[3:], stamp, body, time.Minute, now, false},
		{"not hex", secret, "v1=zz", stamp, body, time.Minute, now, false},
		{"truncated", secret, sig[:len(sig)-2], stamp, body, time.Minute, now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.secret, tc.header, tc.timestamp, tc.body, tc.tolerance, tc.now)
			if (err == nil) != tc.ok {
				t.Fatalf("Verify = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrSignature) {
				t.Errorf("Verify error %v does not wrap ErrSignature", err)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	s := NewSender(Config{Backoff: time.Second, MaxBackoff: 5 * time.Minute})
	for attempt := 1; attempt <= 40; attempt++ {
		full := min(time.Second<<min(attempt-1, 20), 5*time.Minute)
		for range 50 {
			if d := s.backoff(attempt); d < full/2 || d > full {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", attempt, d, full/2, full)
			}
		}
	}
	// Huge settings do not overflow.
	s = NewSender(Config{Backoff: 1 << 62, MaxBackoff: 1<<63 - 1})
	for attempt := 1; attempt < 100; attempt++ {
		if d := s.backoff(attempt); d <= 0 {
			t.Fatalf("backoff(%d) = %v with huge settings", attempt, d)
		}
	}
}
