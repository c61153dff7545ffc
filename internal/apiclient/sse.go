package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Event is one Server-Sent Event.
type Event struct {
	ID   string // the last id: field seen, as the spec keeps it
	Type string // event:, "message" when absent
	Data []byte // the data: lines, joined by line breaks
}

// maxEventLine bounds one line of an event stream.
const maxEventLine = 16 << 20

// Events sends r (a GET of an event stream) and calls fn with each event
// until the stream ends (nil), ctx ends (nil: the caller stopped it), the
// connection fails or fn returns an error. A comment (such as the
// node's keep-alive) calls fn with an Event whose Type is empty: it only
// shows that the stream is alive.
func (c *Client) Events(ctx context.Context, r Request, fn func(Event) error) error {
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.Header.Set("Accept", "text/event-stream")
	resp, err := c.send(ctx, r)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return fmt.Errorf("apiclient: %s: answered %q, not an event stream", r.Path, ct)
	}
	err = ReadEvents(resp.Body, fn)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ReadEvents parses an event stream (text/event-stream, as the HTML
// standard defines it) from rd and calls fn with each event. It returns
// nil at the end of rd; an event not ended by a blank line is dropped.
func ReadEvents(rd io.Reader, fn func(Event) error) error {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 4096), maxEventLine)
	sc.Split(scanLines)
	var ev Event
	var data bytes.Buffer
	hasData := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if hasData {
				ev.Data = bytes.Clone(bytes.TrimSuffix(data.Bytes(), []byte("\n")))
				if ev.Type == "" {
					ev.Type = "message"
				}
				if err := fn(ev); err != nil {
					return err
				}
			}
			ev = Event{ID: ev.ID}
			data.Reset()
			hasData = false
			continue
		}
		if strings.HasPrefix(line, ":") {
			if err := fn(Event{}); err != nil {
				return err
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			ev.Type = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
			hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				ev.ID = value
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("apiclient: event stream: a line longer than %d bytes", maxEventLine)
		}
		return fmt.Errorf("apiclient: event stream: %w", err)
	}
	return nil
}

// scanLines splits at "\r\n", "\n" or "\r", the line ends of an event
// stream.
func scanLines(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		switch b {
		case '\n':
			return i + 1, data[:i], nil
		case '\r':
			if i+1 < len(data) {
				if data[i+1] == '\n' {
					return i + 2, data[:i], nil
				}
				return i + 1, data[:i], nil
			}
			if atEOF {
				return i + 1, data[:i], nil
			}
			return 0, nil, nil // a \n may follow
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
