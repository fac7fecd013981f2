package postgres

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/gpuflow/gpuflow"
)

// FuzzDecodeCursor: a list cursor comes back from clients as they like.
// decodeCursor never panics, refuses with EINVALID, and what it accepts is
// a position (a time and a canonical job id) that encodes to a cursor
// decoding to the same position. Any position encodes and decodes intact.
func FuzzDecodeCursor(f *testing.F) {
	at := time.Date(2025, 9, 6, 14, 35, 41, 818341000, time.UTC)
	id := "4887cbed-9c79-4ef9-83b2-302194ee1bb3"
	for _, c := range []string{
		encodeCursor(at, id), encodeCursor(time.UnixMicro(0), id), encodeCursor(time.UnixMicro(-1), id),
		"", "=", "MTIz", "MTIzXw", "MTIzXzQ4ODdjYmVkLTljNzktNGVmOS04M2IyLTMwMjE5NGVlMWJiMw==",
		"eA", "_", "YWJjX2RlZg", encodeCursor(at, "{"+id+"}"), encodeCursor(at, "4887CBED-9C79-4EF9-83B2-302194EE1BB3"),
	} {
		f.Add(c, at.UnixMicro(), []byte(id[:16]))
	}
	f.Fuzz(func(t *testing.T, c string, us int64, idBytes []byte) {
		gotAt, gotID, err := decodeCursor(c)
		if err != nil {
			if gpuflow.ErrorCode(err) != gpuflow.EINVALID {
				t.Fatalf("refusal of %q is %v, not EINVALID", c, err)
			}
		} else {
			if u, perr := uuid.Parse(gotID); perr != nil || u.String() != gotID {
				t.Fatalf("cursor %q gave id %q, not a canonical UUID", c, gotID)
			}
			at2, id2, err := decodeCursor(encodeCursor(gotAt, gotID))
			if err != nil || !at2.Equal(gotAt) || id2 != gotID {
				t.Fatalf("cursor %q: (%v, %s) re-encoded decodes to (%v, %s, %v)", c, gotAt, gotID, at2, id2, err)
			}
		}
		if len(idBytes) < 16 {
			return
		}
		want := uuid.UUID(idBytes[:16]).String()
		wantAt := time.UnixMicro(us).UTC()
		at3, id3, err := decodeCursor(encodeCursor(wantAt, want))
		if err != nil || !at3.Equal(wantAt) || id3 != want {
			t.Fatalf("position (%v, %s) round-trips to (%v, %s, %v)", wantAt, want, at3, id3, err)
		}
	})
}
