package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weft-io/weft/store"
)

// Limits of list and read parameters.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
	MaxWait      = time.Minute
)

// MessagesResponse is the answer to GET .../messages. Next is the offset
// after the last message returned, or the offset read from if there is
// none: the from of the following read.
type MessagesResponse struct {
	Messages []Message `json:"messages"`
	Next     uint64    `json:"next"`
}

// Offset is where an appended message landed.
type Offset struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Offset    uint64 `json:"offset"`
}

// AppendResponse is the answer to POST .../messages: one offset per
// message, in the order of the body.
type AppendResponse struct {
	Offsets []Offset `json:"offsets"`
}

// TopicsResponse is the answer to GET .../topics. Next is the after of the
// following page, empty on the last one.
type TopicsResponse struct {
	Topics []string `json:"topics"`
	Next   string   `json:"next"`
}

// streamPath splits the {rest...} of a streams route, "<name>/<op>", into
// the stream's path and the operation.
func streamPath(r *http.Request) (path, op string, ok bool) {
	rest := r.PathValue("rest")
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return "", "", false
	}
	return "/" + r.PathValue("volume") + "/" + rest[:i], rest[i+1:], true
}

func (s *Server) streamGet(w http.ResponseWriter, r *http.Request) {
	path, op, ok := streamPath(r)
	switch {
	case ok && op == "messages":
		s.readMessages(w, r, path)
	case ok && op == "topics":
		s.listTopics(w, r, path)
	default:
		Problem(w, http.StatusNotFound, "Not found", "no such route: stream routes end in /messages or /topics")
	}
}

func (s *Server) streamPost(w http.ResponseWriter, r *http.Request) {
	path, op, ok := streamPath(r)
	if !ok || op != "messages" {
		Problem(w, http.StatusNotFound, "Not found", "no such route: append with POST .../messages")
		return
	}
	if path == store.AuditStream {
		forbidden(w, "audit", "the audit stream is written by the node only")
		return
	}
	s.appendMessages(w, r, path)
}

// topicPartition reads the query's topic (required) and partition
// (default 0), answering 400 when they are bad.
func topicPartition(w http.ResponseWriter, q url.Values) (string, int, bool) {
	topic := q.Get("topic")
	if topic == "" {
		badRequest(w, "topic is required")
		return "", 0, false
	}
	part, err := intParam(q, "partition", 0, 0, math.MaxInt32)
	if err != nil {
		badRequest(w, err.Error())
		return "", 0, false
	}
	return topic, part, true
}

// readMessages serves GET .../messages?topic=&partition=&from=&limit=&wait=.
func (s *Server) readMessages(w http.ResponseWriter, r *http.Request, path string) {
	q := r.URL.Query()
	topic, part, ok := topicPartition(w, q)
	if !ok {
		return
	}
	limit, err := intParam(q, "limit", DefaultLimit, 1, MaxLimit)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 || wait > MaxWait {
			badRequest(w, fmt.Sprintf("wait %q: want a duration from 0s to %s, such as 5s", v, MaxWait))
			return
		}
	}
	st := s.cfg.Store.Stream(path)
	ctx := r.Context()
	// from is an offset, "end" for the next offset to be written, or
	// absent for the first one still kept.
	var from uint64
	fromDefault := false
	switch v := q.Get("from"); v {
	case "", "end":
		low, next, err := st.Bounds(ctx, topic, part)
		if err != nil {
			s.Error(w, r, err)
			return
		}
		from, fromDefault = low, v == ""
		if v == "end" {
			from = next
		}
	default:
		if from, err = strconv.ParseUint(v, 10, 64); err != nil {
			badRequest(w, fmt.Sprintf("from %q: want an offset or \"end\"", v))
			return
		}
	}
	opts := store.ReadOptions{Limit: limit}
	var msgs []store.Message
	for range 3 {
		msgs, err = s.read(ctx, st, topic, part, from, opts, wait)
		if !errors.Is(err, store.ErrTrimmed) || !fromDefault {
			break
		}
		// Retention moved the low-water mark since Bounds: start again
		// from the new one.
		low, _, berr := st.Bounds(ctx, topic, part)
		if berr != nil {
			break
		}
		from = low
	}
	if errors.Is(err, store.ErrTrimmed) {
		s.trimmed(w, r, st, topic, part, from, err)
		return
	}
	if err != nil {
		s.Error(w, r, err)
		return
	}
	resp := MessagesResponse{Messages: make([]Message, len(msgs)), Next: from}
	for i, m := range msgs {
		resp.Messages[i] = MessageJSON(m)
	}
	if len(msgs) > 0 {
		resp.Next = msgs[len(msgs)-1].Offset + 1
	}
	writeJSON(w, http.StatusOK, resp)
}

// read reads, waiting up to wait for a first message. Waiting out the time
// is not an error: it yields no messages.
func (s *Server) read(ctx context.Context, st *store.Stream, topic string, part int, from uint64, opts store.ReadOptions, wait time.Duration) ([]store.Message, error) {
	if wait <= 0 {
		return st.Read(ctx, topic, part, from, opts)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if s.testHookWait != nil {
		s.testHookWait()
	}
	msgs, err := st.ReadWait(wctx, topic, part, from, opts)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return nil, nil
	}
	return msgs, err
}

// trimmed answers a read below the low-water mark, naming the mark.
func (s *Server) trimmed(w http.ResponseWriter, r *http.Request, st *store.Stream, topic string, part int, from uint64, err error) {
	low, _, berr := st.Bounds(r.Context(), topic, part)
	if berr != nil {
		s.Error(w, r, err)
		return
	}
	writeProblem(w, ProblemDetails{
		Status: http.StatusGone,
		Title:  "Offset trimmed",
		Detail: fmt.Sprintf("offset %d of %s topic %q partition %d is below the low-water mark %d, the first offset still kept; read from %d",
			from, st.Path(), topic, part, low, low),
		LowWaterMark: &low,
	})
}

// appendMessages serves POST .../messages: every message of the body in
// one durable commit, together with the audit record of the append.
func (s *Server) appendMessages(w http.ResponseWriter, r *http.Request, path string) {
	items, err := decodeAppend(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			Problem(w, http.StatusRequestEntityTooLarge, "Body too large", fmt.Sprintf("the body exceeds %d bytes", mbe.Limit))
		case errors.Is(err, errBodyTooLarge):
			Problem(w, http.StatusRequestEntityTooLarge, "Body too large", err.Error())
		default:
			badRequest(w, err.Error())
		}
		return
	}
	reqs := appendRequests(path, items)
	rec, err := s.auditRecord(r, "stream.append", path, appendDetail(items))
	if err != nil {
		s.Error(w, r, err)
		return
	}
	res, err := s.cfg.Store.AppendMany(r.Context(), append(reqs, rec))
	if err != nil {
		s.Error(w, r, err)
		return
	}
	resp := AppendResponse{Offsets: make([]Offset, 0, len(items))}
	for i, req := range reqs {
		for _, p := range res[i] {
			resp.Offsets = append(resp.Offsets, Offset{Topic: req.Topic, Partition: p.Partition, Offset: p.Offset})
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// maxAuditTopics bounds the topics an append's audit record names.
const maxAuditTopics = 32

// appendDetail is what the audit record of an append says about it.
func appendDetail(items []appendItem) map[string]any {
	var topics []string
	for _, it := range items {
		if !slices.Contains(topics, it.topic) {
			if len(topics) == maxAuditTopics {
				break
			}
			topics = append(topics, it.topic)
		}
	}
	return map[string]any{"messages": len(items), "topics": topics}
}

// auditRecord returns the request that appends to the audit stream the
// record of action by r's token holder, in the form store.Store.Audit
// writes, so that it can be committed together with the change it records:
// the change is durable only if its record is.
func (s *Server) auditRecord(r *http.Request, action, path string, detail any) (store.AppendRequest, error) {
	c := Claims(r.Context())
	rec := map[string]any{
		"ts":     s.now().UTC(),
		"action": action,
		"object": path,
		"node":   s.cfg.Store.Name(),
		"detail": map[string]any{"subject": c.Subject, "detail": detail},
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return store.AppendRequest{}, fmt.Errorf("api: audit record: %w", err)
	}
	return store.AppendRequest{Path: store.AuditStream, Topic: s.cfg.Store.Name(), Partition: 0, Messages: []store.Message{{Value: b}}}, nil
}

// listTopics serves GET .../topics?prefix=&after=&limit=.
func (s *Server) listTopics(w http.ResponseWriter, r *http.Request, path string) {
	q := r.URL.Query()
	limit, err := intParam(q, "limit", DefaultLimit, 1, MaxLimit)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	topics, err := s.cfg.Store.Stream(path).Topics(r.Context(), q.Get("prefix"), q.Get("after"), limit+1)
	if err != nil {
		s.Error(w, r, err)
		return
	}
	resp := TopicsResponse{Topics: topics}
	if len(topics) > limit {
		resp.Topics = topics[:limit]
		resp.Next = topics[limit-1]
	}
	if resp.Topics == nil {
		resp.Topics = []string{}
	}
	writeJSON(w, http.StatusOK, resp)
}

// intParam reads an integer query parameter from lo to hi, def if absent.
func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s %q: want an integer from %d to %d", name, v, lo, hi)
	}
	return n, nil
}
