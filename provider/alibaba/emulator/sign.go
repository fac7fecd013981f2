package emulator

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// The signature algorithms the emulator verifies.
const (
	algACS3 = "ACS3-HMAC-SHA256" // the SDK's default ("V3")
	algV1   = "HMAC-SHA1"        // the legacy RPC signature (SignatureAlgorithm "v2")
)

// headers ACS3 requests must sign, so that the action cannot be swapped.
var requiredSignedHeaders = []string{"host", "x-acs-action", "x-acs-content-sha256", "x-acs-date"}

// v1CommonParams are the legacy signature's own query parameters: they are
// not API parameters (and do not count for ClientToken idempotency).
var v1CommonParams = []string{
	"Action", "Version", "Format", "Timestamp", "SignatureNonce", "SignatureMethod",
	"SignatureVersion", "AccessKeyId", "Signature", "SecurityToken", "SignatureType", "BearerToken",
}

// authError is a signature failure, answered with the API's codes.
type authError struct {
	status  int
	code    string
	message string
}

func (e *authError) Error() string { return e.code + ": " + e.message }

func incomplete(msg string) *authError {
	return &authError{http.StatusBadRequest, "IncompleteSignature", msg}
}

var (
	errUnknownKey = &authError{http.StatusNotFound, "InvalidAccessKeyId.NotFound", "Specified access key is not found."}
	errSignature  = &authError{http.StatusBadRequest, "SignatureDoesNotMatch",
		"Specified signature is not matched with our calculation."}
)

// percentEncode escapes s as the signatures do: url.QueryEscape with
// "+" → "%20", "*" → "%2A" and "%7E" → "~".
func percentEncode(s string) string {
	s = url.QueryEscape(s)
	s = strings.ReplaceAll(s, "+", "%20")
	s = strings.ReplaceAll(s, "*", "%2A")
	return strings.ReplaceAll(s, "%7E", "~")
}

// canonicalQuery is the ACS3 canonical query string: keys sorted, values
// percent-encoded, "k=" for empty values.
func canonicalQuery(q url.Values) string {
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range q {
			if !yield(k) {
				return
			}
		}
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+percentEncode(q.Get(k)))
	}
	return strings.Join(parts, "&")
}

// verifyACS3 checks an ACS3-HMAC-SHA256 request signed with the secret of
// keyID. body is the request body as read.
func verifyACS3(r *http.Request, body []byte, auth string, secretOf func(string) (string, bool)) (keyID string, err *authError) {
	rest, ok := strings.CutPrefix(auth, algACS3+" ")
	if !ok {
		return "", incomplete("The request signature algorithm is not supported.")
	}
	var credential, signed, signature string
	for part := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			credential = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			signature = v
		}
	}
	if credential == "" || signed == "" || signature == "" {
		return "", incomplete("The request signature does not conform to Aliyun standards.")
	}
	secret, ok := secretOf(credential)
	if !ok {
		return credential, errUnknownKey
	}
	signedHeaders := strings.Split(signed, ";")
	for _, h := range requiredSignedHeaders {
		if !slices.Contains(signedHeaders, h) {
			return credential, incomplete("The request signature must sign the header " + h + ".")
		}
	}
	payloadHash := r.Header.Get("x-acs-content-sha256")
	sum := sha256.Sum256(body)
	if payloadHash != hex.EncodeToString(sum[:]) {
		return credential, errSignature
	}
	var ch strings.Builder
	for _, h := range signedHeaders {
		var vals []string
		if h == "host" {
			vals = []string{r.Host}
		} else {
			for _, v := range r.Header.Values(h) {
				vals = append(vals, strings.TrimSpace(v))
			}
		}
		slices.Sort(vals)
		ch.WriteString(h + ":" + strings.Join(vals, ",") + "\n")
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	canonical := r.Method + "\n" + path + "\n" + canonicalQuery(r.URL.Query()) + "\n" +
		ch.String() + "\n" + signed + "\n" + payloadHash
	hashed := sha256.Sum256([]byte(canonical))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(algACS3 + "\n" + hex.EncodeToString(hashed[:])))
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(signature))) {
		return credential, errSignature
	}
	return credential, nil
}

// verifyV1 checks a legacy HMAC-SHA1 RPC signature over params (query and
// form body merged).
func verifyV1(method string, params url.Values, secretOf func(string) (string, bool)) (keyID string, err *authError) {
	keyID = params.Get("AccessKeyId")
	if keyID == "" {
		return "", incomplete("The input parameter \"AccessKeyId\" that is mandatory for processing this request is not supplied.")
	}
	if m := params.Get("SignatureMethod"); m != algV1 {
		return keyID, incomplete("The request signature method is not supported.")
	}
	secret, ok := secretOf(keyID)
	if !ok {
		return keyID, errUnknownKey
	}
	signed := url.Values{}
	for k, v := range params {
		if k != "Signature" {
			signed[k] = v
		}
	}
	enc := signed.Encode()
	enc = strings.ReplaceAll(enc, "+", "%20")
	enc = strings.ReplaceAll(enc, "*", "%2A")
	enc = strings.ReplaceAll(enc, "%7E", "~")
	toSign := method + "&%2F&" + url.QueryEscape(enc)
	mac := hmac.New(sha1.New, []byte(secret+"&"))
	mac.Write([]byte(toSign))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(params.Get("Signature"))) {
		return keyID, errSignature
	}
	return keyID, nil
}
