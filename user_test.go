package gpuflow

import (
	"strings"
	"testing"
)

func TestNormalizeEmail(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com":                      "alice@example.com",
		"  Alice@Example.COM\n":                  "alice@example.com",
		"a.b+tag@sub.example.org":                "a.b+tag@sub.example.org",
		"admin@localhost":                        "admin@localhost",
		"ÉMILE@exemple.fr":                       "émile@exemple.fr",
		"o'brien@example.ie":                     "o'brien@example.ie",
		"x@" + strings.Repeat("d", 200) + ".com": "x@" + strings.Repeat("d", 200) + ".com",
	} {
		got, err := NormalizeEmail(in)
		if err != nil || got != want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "   ", "alice", "@example.com", "alice@", "alice@@example.com",
		"Alice <alice@example.com>", "<alice@example.com>", "alice@example.com, bob@example.com",
		"alice@example.com (Alice)", `"alice smith"@example.com`, "alice smith@example.com",
		"alice@[127.0.0.1]", "alice@example.com\nBcc: eve@example.com",
		"a@" + strings.Repeat("d", 250) + ".com",
	} {
		got, err := NormalizeEmail(in)
		if err == nil {
			t.Errorf("NormalizeEmail(%q) = %q, want an error", in, got)
			continue
		}
		if ErrorCode(err) != EINVALID {
			t.Errorf("NormalizeEmail(%q): code %q, want %q", in, ErrorCode(err), EINVALID)
		}
		if fields, _ := ErrorDetails(err)["fields"].(map[string]any); fields["email"] == nil {
			t.Errorf("NormalizeEmail(%q): details %v name no email field", in, ErrorDetails(err))
		}
	}
}
