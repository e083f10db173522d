package store

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCursor: parseCursor accepts exactly the cursors formatCursor makes, so
// whatever it lets through is valid text for PostgreSQL.
func FuzzCursor(f *testing.F) {
	for _, s := range []string{"MToA", "MTr__g", "MTpzMQ", "", "=", "MTc2MDAwMDAwMDAwMDAwMDA6MDFLMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDE"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, c string) {
		at, id, err := parseCursor(c)
		if err != nil {
			return
		}
		if back := formatCursor(at, id); back != c {
			t.Fatalf("parseCursor(%q) = %v %q, which formats as %q", c, at, id, back)
		}
		if !utf8.ValidString(id) || strings.ContainsRune(id, 0) || len(id) != 26 {
			t.Fatalf("parseCursor(%q) let session %q through", c, id)
		}
	})
}
