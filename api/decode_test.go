package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecodeObject holds decodeObject to encoding/json: whatever it accepts
// is valid UTF-8 and valid JSON, and, when no key differs from a field's
// name only in case, decodes to what encoding/json makes of it.
func FuzzDecodeObject(f *testing.F) {
	for _, s := range []string{`{"stage_arn":"a","user_id":"b","participant_id":"c"}`, `{"user_id":"\u00e9\"","x":[{"}":"]"}]}`,
		`{"user_id":"a","User_Id":"b"}`, `{"user_id":"a","user_id":"b"}`, `{"user\u005fid":"a"}`, `{"user_id":"\ud83d\ude00"}`,
		`{"user_id":"\ud800"}`, `{"user_id":null,"stage_arn":5}`, `[]`, ` {} `, `{"a":1e5,"b":true,"c":null}`, "{\"user_id\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var got joinRequest
		if err := decodeObject(b, &got); err != nil {
			if err.Code != "invalid_json" || err.Message == "" {
				t.Fatalf("%q: error %+v", b, err)
			}
			return
		}
		if !json.Valid(b) || !bytes.Contains(b, []byte("{")) {
			t.Fatalf("%q accepted but not a JSON object", b)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		if _, err := dec.Token(); err != nil {
			t.Fatal(err)
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			key := tok.(string)
			for _, name := range []string{"stage_arn", "user_id", "participant_id"} {
				if strings.EqualFold(key, name) && key != name {
					return // encoding/json would match it; decodeObject must not
				}
			}
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				t.Fatal(err)
			}
		}
		var want joinRequest
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("%q: decodeObject accepted, encoding/json: %v", b, err)
		}
		if got != want {
			t.Fatalf("%q: decodeObject %+v, encoding/json %+v", b, got, want)
		}
	})
}
