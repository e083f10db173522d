package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestBodiesDecodeStrictly: keys match exactly (a key differing only in case
// is unknown and ignored), a repeated key, invalid UTF-8 and a lone surrogate
// escape are refused, and every message is written for a person. Nothing is
// recorded for a refused body.
func TestBodiesDecodeStrictly(t *testing.T) {
	h := newHarness(t)
	sid := h.join("sam").body["session_id"].(string)
	before := h.streamLen()
	s := `"stage_arn":"` + stage + `"`
	cases := []struct {
		name, path, body string
		code, message    string
	}{
		{"repeated key", "/v1/viewers/join", `{` + s + `,"user_id":"a","user_id":"b"}`,
			"invalid_json", `the key "user_id" appears more than once`},
		{"repeated key, escaped", "/v1/viewers/join", `{` + s + `,"user_id":"a","user\u005fid":"b"}`,
			"invalid_json", `the key "user_id" appears more than once`},
		{"repeated unknown key", "/v1/viewers/join", `{` + s + `,"user_id":"a","x":1,"x":2}`,
			"invalid_json", `the key "x" appears more than once`},
		{"case-variant key only", "/v1/viewers/join", `{` + s + `,"USER_ID":"b"}`,
			"invalid_user_id", "user_id is required"},
		{"invalid UTF-8", "/v1/viewers/join", `{` + s + `,"user_id":"a` + "\xff" + `b"}`,
			"invalid_json", "the body must be valid UTF-8"},
		{"invalid UTF-8 in an unknown field", "/v1/viewers/join", `{` + s + `,"user_id":"a","x":"` + "\xc3\x28" + `"}`,
			"invalid_json", "the body must be valid UTF-8"},
		{"lone high surrogate", "/v1/viewers/join", `{` + s + `,"user_id":"a\ud800b"}`,
			"invalid_json", `the body holds a \u escape that is half of a UTF-16 surrogate pair, which is no character`},
		{"lone low surrogate", "/v1/viewers/join", `{` + s + `,"user_id":"a\udc00"}`,
			"invalid_json", `the body holds a \u escape that is half of a UTF-16 surrogate pair, which is no character`},
		{"high surrogate before another escape", "/v1/viewers/join", `{` + s + `,"user_id":"a\ud800\u0041"}`,
			"invalid_json", `the body holds a \u escape that is half of a UTF-16 surrogate pair, which is no character`},
		{"lone surrogate in an unknown field", "/v1/viewers/join", `{` + s + `,"user_id":"a","x":["\udfff"]}`,
			"invalid_json", `the body holds a \u escape that is half of a UTF-16 surrogate pair, which is no character`},
		{"top-level array", "/v1/viewers/join", `[1,2]`, "invalid_json", "the body must be a JSON object"},
		{"top-level string", "/v1/viewers/join", `"x"`, "invalid_json", "the body must be a JSON object"},
		{"top-level null", "/v1/viewers/join", `null`, "invalid_json", "the body must be a JSON object"},
		{"number for a string", "/v1/viewers/join", `{` + s + `,"user_id":5}`, "invalid_json", "field user_id must be a string"},
		{"object for a string", "/v1/viewers/heartbeat", `{"session_id":{}}`, "invalid_json", "field session_id must be a string"},
		{"cut short", "/v1/viewers/join", `{"stage_arn":`, "invalid_json", "the body is not valid JSON: unexpected end of JSON input"},
		{"bad syntax", "/v1/viewers/join", `{"stage_arn" 1}`, "invalid_json",
			"the body is not valid JSON: invalid character '1' after object key (at byte 14)"},
		{"two objects", "/v1/viewers/join", `{` + s + `,"user_id":"u"} {}`, "invalid_json",
			"the body must hold one JSON object and nothing after it"},
		{"empty", "/v1/viewers/join", ``, "invalid_json", "the body is empty"},
		{"blank", "/v1/viewers/leave", " \n\t", "invalid_json", "the body is empty"},
	}
	for _, tc := range cases {
		a := h.do(http.MethodPost, tc.path, "application/json", tc.body)
		msg := a.message()
		if a.status != 400 || a.code() != tc.code || msg != tc.message {
			t.Errorf("%s: got %d %q %q, want 400 %q %q", tc.name, a.status, a.code(), msg, tc.code, tc.message)
		}
	}
	if after := h.streamLen(); after != before {
		t.Fatalf("refused bodies appended %d events", after-before)
	}

	accepted := []struct{ name, path, body, user string }{
		// A key differing only in case is an unknown field: ignored.
		{"case-variant key", "/v1/viewers/join", `{` + s + `,"user_id":"a","User_Id":"b","USER_ID":"c"}`, "a"},
		{"escaped key", "/v1/viewers/join", `{` + s + `,"user\u005fid":"d"}`, "d"},
		{"surrogate pair", "/v1/viewers/join", `{` + s + `,"user_id":"e\ud83d\ude00"}`, "e\U0001F600"},
		{"escaped backslash before ud800", "/v1/viewers/join", `{` + s + `,"user_id":"h\\ud800"}`, `h\ud800`},
		{"escapes in a value", "/v1/viewers/join", `{` + s + `,"user_id":"f\"\\\/\u00e9"}`, `f"\/é`},
		{"unknown nested field", "/v1/viewers/join", `{"x":{"y":["}",{"z":"\"]"}]},` + s + `,"user_id":"g"}`, "g"},
		{"null for a string", "/v1/viewers/heartbeat", `{"session_id":"` + sid + `","Session_Id":null}`, ""},
	}
	for _, tc := range accepted {
		a := h.do(http.MethodPost, tc.path, "application/json", tc.body)
		if a.status != 200 {
			t.Errorf("%s: got %d %v", tc.name, a.status, a.body)
			continue
		}
		if tc.user != "" {
			if e := h.lastEvent(); e.User != tc.user {
				t.Errorf("%s: recorded user %q, want %q", tc.name, e.User, tc.user)
			}
		}
	}
}

// TestConfigBodiesRefuseNULAndInvalidText: the PUT bodies' texts reach
// PostgreSQL only as valid UTF-8 without NUL or control characters; the
// refusal is a 400 and changes nothing.
func TestConfigBodiesRefuseNULAndInvalidText(t *testing.T) {
	h, _ := newReadHarness(t)
	st := stagePath(stage, "")
	cases := []struct{ path, body, code, message string }{
		{st, `{"stage_name":"a` + "\xff" + `"}`, "invalid_json", "the body must be valid UTF-8"},
		{st, `{"stage_name":"a\u0000b"}`, "invalid_stage_name", "stage_name must be at most 100 printable characters"},
		{st, `{"stage_name":"a\ud800"}`, "invalid_json", `the body holds a \u escape that is half of a UTF-16 surrogate pair, which is no character`},
		{st, `{"max_viewers":"ten"}`, "invalid_json", "field max_viewers must be an integer or null"},
		{st, `{"max_viewers":1.5}`, "invalid_json", "field max_viewers must be an integer or null"},
		{st, `{"is_master":"yes"}`, "invalid_json", "field is_master must be true or false"},
		{st, `{"stage_name":"a","stage_name":"b"}`, "invalid_json", `the key "stage_name" appears more than once`},
		{"/v1/users/u", `{"username":"` + "\xed\xa0\x80" + `"}`, "invalid_json", "the body must be valid UTF-8"},
		{"/v1/users/u", `{"username":"a\u0000"}`, "invalid_username", "username must be at most 50 printable characters"},
		{"/v1/users/u", `{"username":7}`, "invalid_json", "field username must be a string or null"},
		{"/v1/users/u", `{"email":"a\u0000@example.com"}`, "invalid_email", "email must be one address such as name@example.com, at most 254 characters"},
		{"/v1/users/u", `{"email":"a\u0007b@example.com"}`, "invalid_email", "email must be one address such as name@example.com, at most 254 characters"},
		{"/v1/users/u", `{"email":"\ufffd@example.com","email":"x@example.com"}`, "invalid_json", `the key "email" appears more than once`},
	}
	for _, tc := range cases {
		a := h.put(tc.path, tc.body)
		msg := a.message()
		if a.status != 400 || a.code() != tc.code || msg != tc.message {
			t.Errorf("PUT %s %q: got %d %q %q, want 400 %q %q", tc.path, tc.body, a.status, a.code(), msg, tc.code, tc.message)
		}
	}
	if a := h.get(st); a.status != 404 {
		t.Errorf("a refused PUT created the stage: %d %v", a.status, a.body)
	}
	if a := h.get("/v1/users/u"); a.status != 404 {
		t.Errorf("a refused PUT created the user: %d %v", a.status, a.body)
	}
	// A key differing only in case is ignored, as any unknown field.
	if a := h.put("/v1/users/u", `{"username":"Una","UserName":"other","EMAIL":"x@example.com"}`); a.status != 201 || a.body["username"] != "Una" || a.body["email"] != nil {
		t.Errorf("case-variant keys = %d %v", a.status, a.body)
	}
	if a := h.put(st, `{"stage_name":"Main","Max_Viewers":3}`); a.status != 201 || a.body["max_viewers"] != nil || a.body["stage_name"] != "Main" {
		t.Errorf("case-variant stage keys = %d %v", a.status, a.body)
	}
}

// TestUserAgentReachesPostgreSQLAsText: the User-Agent header may carry any
// bytes above 0x7f, and the 512-byte cut may fall inside a character; either
// way the join's row reaches PostgreSQL (not the dead letters) with valid
// text.
func TestUserAgentReachesPostgreSQLAsText(t *testing.T) {
	h, db := newReadHarness(t)
	uas := map[string]string{
		"invalid": "agent/\xff\xfe 1.0",
		"cut":     strings.Repeat("a", 511) + "é and more",
	}
	want := map[string]string{
		"invalid": "agent/\ufffd 1.0", // one U+FFFD per run of invalid bytes
		"cut":     strings.Repeat("a", 511),
	}
	for user, ua := range uas {
		a := h.do(http.MethodPost, "/v1/viewers/join", "application/json", `{"stage_arn":"`+stage+`","user_id":"`+user+`"}`, "User-Agent", ua)
		if a.status != 200 {
			t.Fatalf("join with User-Agent %q = %d %v", ua, a.status, a.body)
		}
	}
	h.project(db)
	for user := range uas {
		a := h.get("/v1/users/" + user + "/history")
		got, _ := a.body["sessions"].([]any)
		if len(got) != 1 || got[0].(map[string]any)["user_agent"] != want[user] {
			t.Errorf("%s: history = %d %v, want user_agent %q", user, a.status, a.body, want[user])
		}
	}
}
