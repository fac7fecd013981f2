package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Common API error codes (Tencent Cloud API 3.0).
const (
	codeInvalidAuthorization = "AuthFailure.InvalidAuthorization"
	codeSecretIDNotFound     = "AuthFailure.SecretIdNotFound"
	codeSignatureExpire      = "AuthFailure.SignatureExpire"
	codeSignatureFailure     = "AuthFailure.SignatureFailure"
	codeRequestLimitExceeded = "RequestLimitExceeded"
	codeInvalidAction        = "InvalidAction"
	codeNoSuchVersion        = "NoSuchVersion"
	codeUnsupportedRegion    = "UnsupportedRegion"
	codeRequestSizeLimit     = "RequestSizeLimitExceeded"
)

const signAlgorithm = "TC3-HMAC-SHA256"

// authenticate verifies the request's TC3-HMAC-SHA256 signature the way the
// API does: the canonical request over the signed headers (lower-cased,
// trimmed) and the hashed payload, the credential scope
// <date>/cvm/tc3_request, and the key derived from "TC3"+SecretKey.
func (e *Emulator) authenticate(r *http.Request, body []byte) *apiError {
	auth := r.Header.Get("Authorization")
	alg, rest, ok := strings.Cut(auth, " ")
	if !ok || alg != signAlgorithm {
		return &apiError{codeInvalidAuthorization, "Authorization header is not a " + signAlgorithm + " credential."}
	}
	fields := map[string]string{}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			fields[k] = v
		}
	}
	scope := strings.Split(fields["Credential"], "/")
	if len(scope) != 4 || fields["SignedHeaders"] == "" || fields["Signature"] == "" {
		return &apiError{codeInvalidAuthorization, "Authorization header is malformed: Credential, SignedHeaders and Signature are required."}
	}
	secretID, date, service, term := scope[0], scope[1], scope[2], scope[3]
	key, ok := e.creds[secretID]
	if !ok {
		return &apiError{codeSecretIDNotFound, "The SecretId is not found, please ensure that your SecretId is correct."}
	}
	tsText := r.Header.Get("X-TC-Timestamp")
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return &apiError{codeInvalidAuthorization, "X-TC-Timestamp is missing or not a unix time."}
	}
	signedAt := time.Unix(ts, 0)
	if d := time.Since(signedAt); d > e.maxSkew || d < -e.maxSkew {
		return &apiError{codeSignatureExpire, "Signature expired. Timestamp and server time cannot differ by more than 5 minutes."}
	}
	if date != signedAt.UTC().Format("2006-01-02") || service != "cvm" || term != "tc3_request" {
		return &apiError{codeSignatureFailure, "The provided credentials could not be validated because the credential scope does not match the request."}
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	if !slices.Contains(signed, "content-type") || !slices.Contains(signed, "host") {
		return &apiError{codeSignatureFailure, "SignedHeaders must include content-type and host."}
	}
	var canonHeaders strings.Builder
	for _, name := range signed {
		v := r.Header.Get(name)
		if name == "host" {
			v = r.Host
		}
		canonHeaders.WriteString(name + ":" + strings.ToLower(strings.TrimSpace(v)) + "\n")
	}
	payload := sha256Hex(body)
	if r.Header.Get("X-TC-Content-SHA256") == "UNSIGNED-PAYLOAD" {
		payload = sha256Hex([]byte("UNSIGNED-PAYLOAD"))
	}
	canonical := r.Method + "\n/\n" + r.URL.RawQuery + "\n" + canonHeaders.String() + "\n" + fields["SignedHeaders"] + "\n" + payload
	toSign := signAlgorithm + "\n" + tsText + "\n" + date + "/" + service + "/" + term + "\n" + sha256Hex([]byte(canonical))
	want := hex.EncodeToString(Sign(key, date, service, toSign))
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(fields["Signature"]))) {
		return &apiError{codeSignatureFailure, "The provided credentials could not be validated. Please check your signature is correct."}
	}
	return nil
}

// secretIDOf returns the SecretId of an authenticated request's
// credential scope: the account the API counts rates by.
func secretIDOf(r *http.Request) string {
	_, rest, _ := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	id, _, _ := strings.Cut(rest, "/")
	return id
}

// Sign returns the TC3-HMAC-SHA256 signature of stringToSign with the key
// derived from secretKey, date (YYYY-MM-DD, UTC) and service.
func Sign(secretKey, date, service, stringToSign string) []byte {
	kDate := hmacSHA256([]byte("TC3"+secretKey), date)
	kService := hmacSHA256(kDate, service)
	kSigning := hmacSHA256(kService, "tc3_request")
	return hmacSHA256(kSigning, stringToSign)
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
