package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"
)

// decodeObject decodes the JSON object b into the struct v points to,
// strictly: b must be valid UTF-8 holding exactly one JSON object; its keys
// match the fields' json tags exactly (a key differing only in case is an
// unknown field, and unknown fields are ignored); no key may appear twice;
// no \u escape may be half of a surrogate pair. encoding/json would match keys
// case-insensitively, let the last of a repeated key win and turn invalid
// text into U+FFFD, so distinct bodies would decode as one. The fields' values
// decode as encoding/json decodes them (a null leaves a non-pointer field
// alone; the keys of a nested object, which no request has, would match as
// encoding/json matches them). Errors are 400 invalid_json with a message for
// people.
func decodeObject(b []byte, v any) *Error {
	i := skipSpace(b, 0)
	switch {
	case i == len(b):
		return errJSON("the body is empty")
	case !utf8.Valid(b):
		return errJSON("the body must be valid UTF-8")
	case b[i] != '{':
		return errJSON("the body must be a JSON object")
	case !json.Valid(b):
		return syntaxError(b)
	case loneSurrogate(b):
		return errJSON(`the body holds a \u escape that is half of a UTF-16 surrogate pair, which is no character`)
	}
	sv := reflect.ValueOf(v).Elem()
	fields := fieldsOf(sv.Type())
	var seen [8][]byte
	keys := seen[:0]
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] == '"' {
		end := skipString(b, i)
		key := b[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var s string
			_ = json.Unmarshal(b[i:end], &s) // valid JSON: cannot fail
			key = []byte(s)
		}
		for _, k := range keys {
			if bytes.Equal(k, key) {
				return errJSON(fmt.Sprintf("the key %q appears more than once", clip(key)))
			}
		}
		keys = append(keys, key)
		start := skipSpace(b, skipSpace(b, end)+1) // past the ':'
		i = skipValue(b, start)
		for _, f := range fields {
			if string(key) == f.name {
				if err := f.set(sv.Field(f.index), b[start:i]); err != nil {
					return err
				}
				break
			}
		}
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return nil
}

func errJSON(message string) *Error { return errorf(http.StatusBadRequest, "invalid_json", message) }

// syntaxError explains why b, which starts like an object, is not valid
// JSON.
func syntaxError(b []byte) *Error {
	dec := json.NewDecoder(bytes.NewReader(b))
	var first json.RawMessage
	err := dec.Decode(&first)
	var syn *json.SyntaxError
	switch {
	case err == nil:
		return errJSON("the body must hold one JSON object and nothing after it")
	case errors.As(err, &syn) && syn.Offset < int64(len(b)):
		return errJSON(fmt.Sprintf("the body is not valid JSON: %s (at byte %d)", syn.Error(), syn.Offset))
	default:
		return errJSON("the body is not valid JSON: unexpected end of JSON input")
	}
}

// clip shortens a key quoted in a message.
func clip(key []byte) string {
	const max = 64
	if utf8.RuneCount(key) <= max {
		return string(key)
	}
	r := []rune(string(key))
	return string(r[:max]) + "…"
}

// jsonField is one field of a request struct as decodeObject sees it.
type jsonField struct {
	name  string // the json tag's name, else the Go name
	index int
	// want is what a person is told the value must be.
	want string
}

// set decodes raw into fv. A string without escapes, the common case of the
// player routes, is assigned without encoding/json.
func (f jsonField) set(fv reflect.Value, raw []byte) *Error {
	if fv.Kind() == reflect.String && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 {
		fv.SetString(string(raw[1 : len(raw)-1]))
		return nil
	}
	if err := json.Unmarshal(raw, fv.Addr().Interface()); err != nil {
		return errJSON("field " + f.name + " must be " + f.want)
	}
	return nil
}

var fieldCache sync.Map // reflect.Type → []jsonField

// fieldsOf returns the exported fields of struct type t by their json names,
// leaving out those tagged "-".
func fieldsOf(t reflect.Type) []jsonField {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]jsonField)
	}
	var fs []jsonField
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name := sf.Name
		if tag, ok := sf.Tag.Lookup("json"); ok {
			tagName, _, _ := strings.Cut(tag, ",")
			if tagName == "-" {
				continue
			}
			if tagName != "" {
				name = tagName
			}
		}
		fs = append(fs, jsonField{name: name, index: i, want: describe(sf.Type)})
	}
	fieldCache.Store(t, fs)
	return fs
}

// describe names the JSON values of Go type t for people.
func describe(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return describe(t.Elem()) + " or null"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a valid value"
}

// The scanners below walk JSON that json.Valid accepted; each returns the
// index just past what it skipped, never past len(b).

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString skips the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// skipValue skips the value starting at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); {
			switch b[j] {
			case '"':
				j = skipString(b, j)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
			j++
		}
		return len(b)
	}
	for ; i < len(b); i++ { // a number, true, false or null
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

// loneSurrogate reports whether valid JSON b holds a \u escape of half a
// UTF-16 surrogate pair, which encoding/json turns into U+FFFD. A backslash
// occurs in valid JSON only inside strings, starting an escape.
func loneSurrogate(b []byte) bool {
	for i := bytes.IndexByte(b, '\\'); i >= 0 && i+1 < len(b); {
		if b[i+1] != 'u' {
			i += 2
		} else {
			r := hex4(b, i+2)
			i += 6
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return true
			case r >= 0xD800 && r <= 0xDBFF:
				if i+1 >= len(b) || b[i] != '\\' || b[i+1] != 'u' {
					return true
				}
				if lo := hex4(b, i+2); lo < 0xDC00 || lo > 0xDFFF {
					return true
				}
				i += 6
			}
		}
		next := bytes.IndexByte(b[min(i, len(b)):], '\\')
		if next < 0 {
			return false
		}
		i += next
	}
	return false
}

// hex4 is the value of the four hex digits at b[i:], -1 if there are none.
func hex4(b []byte, i int) rune {
	if i+4 > len(b) {
		return -1
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}
