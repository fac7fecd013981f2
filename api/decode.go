package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/gpuflow/gpuflow"
)

// requireJSON rejects a request whose Content-Type is not application/json
// with 415 unsupported_media_type.
func requireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		if ct == "" {
			ct = "none"
		}
		return &wireError{
			Status:  http.StatusUnsupportedMediaType,
			Code:    codeUnsupportedMediaType,
			Message: fmt.Sprintf("Content-Type must be application/json, got %s", ct),
		}
	}
	return nil
}

// readBody reads the whole body, at most limit bytes; a larger body is
// ETOOLARGE.
func readBody(r *http.Request, w http.ResponseWriter, limit int64) ([]byte, error) {
	tooLarge := func() error {
		return gpuflow.Errorf(gpuflow.ETOOLARGE, "request body must be at most %d bytes", limit).
			WithDetails(map[string]any{"limit_bytes": limit})
	}
	if r.ContentLength > limit {
		return nil, tooLarge()
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge()
		}
		return nil, &wireError{Status: http.StatusBadRequest, Code: codeInvalidJSON, Message: "reading the request body failed"}
	}
	return data, nil
}

// decodeOptional reads an optional JSON body of at most limit bytes into v:
// an empty (or all-space) body leaves v as it is; any other body must be
// application/json and decode strictly (decodeStrict).
func decodeOptional(r *http.Request, w http.ResponseWriter, limit int64, v any) error {
	body, err := readBody(r, w, limit)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := requireJSON(r); err != nil {
		return err
	}
	return decodeStrict(body, v)
}

// decodeStrict decodes data, a single JSON object, into v. Unknown fields
// and wrong types are EINVALID naming the field; malformed JSON and trailing
// data are invalid_json with the byte offset.
func decodeStrict(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return &wireError{Status: http.StatusBadRequest, Code: codeInvalidJSON,
			Message: "request body is empty; expected a JSON object", Details: map[string]any{"offset": 0}}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, len(data))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		off := dec.InputOffset()
		return &wireError{Status: http.StatusBadRequest, Code: codeInvalidJSON,
			Message: fmt.Sprintf("unexpected data after the JSON object at byte %d", off),
			Details: map[string]any{"offset": off}}
	}
	return nil
}

// jsonError classifies a decoding error.
func jsonError(err error, size int) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return &wireError{Status: http.StatusBadRequest, Code: codeInvalidJSON,
			Message: fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: ")),
			Details: map[string]any{"offset": se.Offset}}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return &wireError{Status: http.StatusBadRequest, Code: codeInvalidJSON,
			Message: fmt.Sprintf("malformed JSON at byte %d: unexpected end of input", size),
			Details: map[string]any{"offset": size}}
	case errors.As(err, &te):
		if te.Field == "" {
			return gpuflow.Errorf(gpuflow.EINVALID, "request body must be a JSON object, got %s", te.Value)
		}
		msg := fmt.Sprintf("%s must be %s, got %s", te.Field, kindName(te.Type), te.Value)
		return gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
			WithDetails(map[string]any{"fields": map[string]any{te.Field: msg}})
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if uq, uerr := strconv.Unquote(f); uerr == nil {
			f = uq
		}
		msg := fmt.Sprintf("unknown field %q", f)
		return gpuflow.Errorf(gpuflow.EINVALID, "%s", msg).
			WithDetails(map[string]any{"fields": map[string]any{f: "unknown field"}})
	}
	return &wireError{Status: http.StatusBadRequest, Code: codeInvalidJSON, Message: "malformed JSON"}
}

// kindName describes a Go type in JSON terms.
func kindName(t reflect.Type) string {
	if t == nil {
		return "a valid value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a valid value"
}
