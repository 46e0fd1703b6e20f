// Package auth implements Tandem's access tokens: the claims they carry, how
// the server verifies them, how they are minted (the `tandem token` command),
// and the admin-key and Bearer-header checks of the REST API.
//
// # Token format
//
// An access token is a JSON Web Token (RFC 7519) in compact form, signed with
// one of exactly two algorithms:
//
//   - HS256 (HMAC-SHA256) with a shared secret of at least 32 bytes
//     (--token-secret / TANDEM_TOKEN_SECRET), or
//   - EdDSA (Ed25519) with a private key whose public half the server is
//     given (--token-public-key / TANDEM_TOKEN_PUBLIC_KEY).
//
// Every other algorithm, "none" included, is refused, and so is an algorithm
// the server has no key for: a server configured with only a public key
// refuses HS256 tokens, whatever they were signed with.
//
// The payload holds these claims:
//
//	docs   object   document ID → "read" or "write". A key is a bare
//	                automerge-repo document ID (bs58check, as in an
//	                automerge:<ID> URL, without the "automerge:" prefix) or "*"
//	                for every document. An explicit ID takes precedence over
//	                "*", in either direction: {"*": "write", "<ID>": "read"}
//	                makes <ID> read-only. "write" implies "read". Any other
//	                value, or a key that is not a valid ID, makes the whole
//	                token invalid.
//	admin  boolean  optional; true grants the REST API (/api/v1) as an admin.
//	exp    number   required: expiry, in seconds since the Unix epoch. Tokens
//	                without exp are refused, so that a revocation list only has
//	                to remember a token until it would have expired anyway.
//	nbf    number   optional: not valid before this time.
//	iat    number   optional: when the token was issued (informational).
//	jti    string   optional: the token's ID, which the server can revoke.
//	sub    string   optional: who the token is for; logged as the principal.
//
// Times are checked with a configurable leeway for clock skew. Other claims
// (iss, aud, ...) are allowed and ignored. Tokens longer than [MaxTokenLen]
// are refused unread.
//
// An example payload, for a user who may edit one document and read all the
// others, valid for an hour:
//
//	{
//	  "docs": {
//	    "4NMNnkMhL8jXrdJ9jamS58PAVdXu": "write",
//	    "*": "read"
//	  },
//	  "sub": "alice",
//	  "jti": "q2P0vKq3kR9y6x8t1Qm0Dg",
//	  "iat": 1767225600,
//	  "exp": 1767229200
//	}
//
// A WebSocket client passes its token in the URL query, as
// wss://host/?token=<JWT>, because the stock automerge-repo client can set no
// header. REST clients send "Authorization: Bearer <JWT>" (an admin-scoped
// token) or the admin key.
package auth
