package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// checkJSON returns nil if b is one valid JSON value, else an error for
// people: what (such as "the document (argument 3)") is not valid JSON,
// what is wrong, at which line and column, and the line with a caret
// under the spot.
func checkJSON(what string, b []byte) error {
	var raw json.RawMessage
	err := json.Unmarshal(b, &raw)
	if err == nil {
		return nil
	}
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return fmt.Errorf("%s is not valid JSON: %v", what, err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return fmt.Errorf("%s is empty, not JSON", what)
	}
	// The decoder stops after the byte it could not take; at the end of
	// the input it reports the end.
	pos := int(se.Offset) - 1
	if pos < 0 {
		pos = 0
	}
	problem := ""
	// At the end of the input the decoder reports a space it made up.
	atEnd := int(se.Offset) >= len(b) && strings.HasPrefix(se.Error(), "invalid character ' ' ") && b[len(b)-1] != ' '
	if pos >= len(b) || atEnd || se.Error() == "unexpected end of JSON input" {
		pos = len(b)
		problem = "the JSON ends before it is complete (an unclosed {, [ or \" ?)"
	} else {
		problem = "found " + describeAt(b, pos) + " " + jsonContext(se.Error())
	}
	line, col, text := lineAt(b, pos)
	return fmt.Errorf("%s is not valid JSON: at line %d, column %d, %s\n%s", what, line, col, problem, text)
}

// describeAt names the character at b[pos] for a message.
func describeAt(b []byte, pos int) string {
	r, size := utf8.DecodeRune(b[pos:])
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("the byte 0x%02x (not UTF-8)", b[pos])
	}
	return strconv.QuoteRune(r)
}

// jsonContext says, from encoding/json's message, where the character
// was found and what JSON wants there.
func jsonContext(msg string) string {
	rest, ok := strings.CutPrefix(msg, "invalid character ")
	if i := strings.Index(rest, "' "); ok && i > 0 {
		rest = rest[i+2:]
	} else {
		return "(" + msg + ")"
	}
	switch {
	case rest == "looking for beginning of object key string":
		return `where a member name in double quotes should start (JSON takes "name", not 'name' or name, and no comma before })`
	case rest == "looking for beginning of value":
		return `where a value should start (a string in double quotes, a number, true, false, null, { or [; no comma before ])`
	case rest == "after object key":
		return "after a member name, where ':' should be"
	case rest == "after object key:value pair":
		return "after a member, where ',' or '}' should be"
	case rest == "after array element":
		return "after an array element, where ',' or ']' should be"
	case rest == "after top-level value":
		return "after the end of the JSON value (only one value is allowed)"
	case rest == "in string literal":
		return `inside a string (control characters such as tabs and line breaks must be escaped: \t, \n)`
	case rest == "in string escape code":
		return `in a string escape (JSON has \" \\ \/ \b \f \n \r \t and \uXXXX)`
	case strings.Contains(rest, "numeric literal") || strings.Contains(rest, "decimal point") || strings.Contains(rest, "exponent"):
		return "in a number"
	case strings.HasPrefix(rest, "in literal "):
		word, _, _ := strings.Cut(strings.TrimPrefix(rest, "in literal "), " ")
		return "in the word " + word
	}
	return rest
}

// lineAt returns the line and column (1-based, in characters) of b[pos],
// and that line, cut to about 60 characters around the spot, with a
// caret under it on the next line.
func lineAt(b []byte, pos int) (line, col int, text string) {
	start := strings.LastIndexByte(string(b[:pos]), '\n') + 1
	end := len(b)
	if i := strings.IndexByte(string(b[pos:]), '\n'); i >= 0 {
		end = pos + i
	}
	line = strings.Count(string(b[:pos]), "\n") + 1
	before := []rune(strings.ToValidUTF8(string(b[start:pos]), "\uFFFD"))
	after := []rune(strings.ToValidUTF8(string(b[pos:end]), "\uFFFD"))
	col = len(before) + 1
	const room = 30
	prefix, suffix := "  ", ""
	if len(before) > room {
		before = before[len(before)-room:]
		prefix += "…"
	}
	if len(after) > room {
		after = after[:room]
		suffix = "…"
	}
	show := func(rs []rune) string {
		return strings.Map(func(r rune) rune {
			if !unicode.IsPrint(r) {
				return ' ' // tabs and the like, kept one column wide
			}
			return r
		}, string(rs))
	}
	caret := strings.Repeat(" ", utf8.RuneCountInString(prefix)+len(before)) + "^"
	return line, col, prefix + show(before) + show(after) + suffix + "\n" + caret
}
