package main

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

var jsonArgTests = []struct {
	in   string
	want string // "": valid; else the error contains each line of this
}{
	{`{"a":1}`, ""},
	{` [1, 2] `, ""},
	{`"x"`, ""},
	{`{bad`, "at line 1, column 2, found 'b' where a member name in double quotes should start\n  {bad\n   ^"},
	{`{'a':1}`, `found '\'' where a member name in double quotes should start`},
	{`{"a":1,}`, "column 8, found '}' where a member name"},
	{`[1,]`, "column 4, found ']' where a value should start"},
	{`{"a" 1}`, "column 6, found '1' after a member name, where ':' should be"},
	{`{"a":1 "b":2}`, `found '"' after a member, where ',' or '}' should be`},
	{`[1 2]`, "found '2' after an array element, where ',' or ']' should be"},
	{`{} x`, "column 4, found 'x' after the end of the JSON value"},
	{"\"a\tb\"", `found '\t' inside a string`},
	{`"\q"`, `found 'q' in a string escape`},
	{`{"a":`, "at line 1, column 6, the JSON ends before it is complete"},
	{`tru`, "column 4, the JSON ends before it is complete"},
	{`{"a":1.}`, "column 8, found '}' in a number"},
	{`nul!`, "found '!' in the word null"},
	{"\xff", "found the byte 0xff (not UTF-8)"},
	{"{\n  \"a\": 1,\n  \"b\": x\n}", "at line 3, column 8, found 'x' where a value should start\n    \"b\": x\n         ^"},
	{"", "is empty, not JSON"},
	{"  \n", "is empty, not JSON"},
	{`{"k":"` + strings.Repeat("v", 100) + strings.Repeat("w", 100), "column 207, the JSON ends before it is complete\n  …" + strings.Repeat("w", 30) + "\n" + strings.Repeat(" ", 33) + "^"},
}

func TestCheckJSON(t *testing.T) {
	for _, tt := range jsonArgTests {
		err := checkJSON("the document (argument 3)", []byte(tt.in))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("checkJSON(%q): %v", tt.in, err)
		case tt.want != "" && err == nil:
			t.Errorf("checkJSON(%q) = nil, want an error", tt.in)
		case tt.want != "" && !strings.HasPrefix(err.Error(), "the document (argument 3) is "):
			t.Errorf("checkJSON(%q): %v", tt.in, err)
		case tt.want != "":
			for _, line := range strings.Split(tt.want, "\n") {
				if !strings.Contains(err.Error(), line) {
					t.Errorf("checkJSON(%q):\n%s\nwant it to contain\n%s", tt.in, err, line)
				}
			}
		}
	}
}

func FuzzCheckJSON(f *testing.F) {
	for _, tt := range jsonArgTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := checkJSON("x", []byte(s))
		if (err == nil) != json.Valid([]byte(s)) {
			t.Fatalf("checkJSON(%q) = %v, json.Valid says %v", s, err, json.Valid([]byte(s)))
		}
		if err != nil && !utf8.ValidString(err.Error()) {
			t.Fatalf("checkJSON(%q): message not UTF-8: %q", s, err)
		}
	})
}
