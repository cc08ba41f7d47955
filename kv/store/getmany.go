package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wispfn/wisp/kv/natsnode"
)

// getManyBatch is how many keys one direct-get request asks for. The server answers at most
// 1024 per request; 256 keys of MaxKeyBytes keep the request well under max_payload.
const getManyBatch = 256

// getManyTimeout bounds a batch whose ctx has no deadline, like jetstream's requests.
const getManyTimeout = 5 * time.Second

// multiGetRequest asks a stream for the last message of each subject, all at the revision
// the stream had when the request arrived.
type multiGetRequest struct {
	MultiLast []string `json:"multi_last"`
	Batch     int      `json:"batch"`
}

// Headers of a direct-get answer.
const (
	hdrStatus      = "Status"
	hdrDescription = "Description"
	hdrSubject     = "Nats-Subject"
	hdrSequence    = "Nats-Sequence"
	hdrTimeStamp   = "Nats-Time-Stamp"
	hdrNumPending  = "Nats-Num-Pending"
)

func (s *natsStore) GetMany(ctx context.Context, keys []string) ([]Entry, error) {
	for _, k := range keys {
		if err := ValidKey(k); err != nil {
			return nil, err
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	if err := s.up("get", keys[0]); err != nil {
		return nil, err
	}
	out := make([]Entry, len(keys))
	for start := 0; start < len(keys); start += getManyBatch {
		end := min(start+getManyBatch, len(keys))
		if err := s.getBatch(ctx, keys[start:end], out[start:end]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// getBatch reads keys into out with one direct-get request to the local stream: the server
// streams one message per existing key, then an end-of-batch status.
func (s *natsStore) getBatch(ctx context.Context, keys []string, out []Entry) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, getManyTimeout)
		defer cancel()
	}
	fail := func(err error) error {
		if natsnode.Unreachable(err) && s.gone(ctx) {
			return fmt.Errorf("cannot get %d keys (%q...) in namespace %q: its bucket %s no longer exists (it was deleted while the store was open; Open creates it again)", len(keys), keys[0], s.ns, s.b.Stream)
		}
		return fmt.Errorf("cannot get %d keys (%q...) in namespace %q: %w", len(keys), keys[0], s.ns, classify(ctx, err))
	}
	req := multiGetRequest{MultiLast: make([]string, len(keys)), Batch: len(keys)}
	index := make(map[string]int, len(keys))
	for i, k := range keys {
		req.MultiLast[i] = s.b.Subjects + k
		if _, dup := index[k]; !dup {
			index[k] = i
		}
	}
	data, err := json.Marshal(req)
	if err != nil {
		return fail(err)
	}
	nc := s.node.Conn()
	inbox := nc.NewInbox()
	// Room for every answer: one message per key and the end-of-batch status.
	answers := make(chan *nats.Msg, len(keys)+1)
	sub, err := nc.ChanSubscribe(inbox, answers)
	if err != nil {
		return fail(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+s.b.Stream, inbox, data); err != nil {
		return fail(err)
	}
	truncated := false
	for done := false; !done; {
		var m *nats.Msg
		select {
		case m = <-answers:
		case <-ctx.Done():
			return fail(ctx.Err())
		}
		switch status := m.Header.Get(hdrStatus); status {
		case "":
			if err := s.store(m, index, out); err != nil {
				return fail(err)
			}
		case "204": // end of batch
			truncated = m.Header.Get(hdrNumPending) != "0"
			done = true
		case "404": // none of the keys exists
			done = true
		case "503":
			return fail(nats.ErrNoResponders)
		default:
			return fail(fmt.Errorf("direct get answered %s %s", status, m.Header.Get(hdrDescription)))
		}
	}
	for i, k := range keys {
		if out[i].Revision != 0 {
			continue
		}
		if j := index[k]; j != i {
			out[i] = out[j] // a key asked for twice
			continue
		}
		if truncated {
			// The server stopped at its byte limit; read the rest one by one.
			e, err := s.Get(ctx, k)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			out[i] = e
		}
	}
	return nil
}

// store decodes one answer of a direct get into out.
func (s *natsStore) store(m *nats.Msg, index map[string]int, out []Entry) error {
	subject := m.Header.Get(hdrSubject)
	key := strings.TrimPrefix(subject, s.b.Subjects)
	i, ok := index[key]
	if !ok {
		return fmt.Errorf("direct get answered subject %q, which was not asked for", subject)
	}
	if m.Header.Get(kvOperation) != "" || m.Header.Get(jetstream.MarkerReasonHeader) != "" {
		return nil // deleted, purged or expired
	}
	seq, err := strconv.ParseUint(m.Header.Get(hdrSequence), 10, 64)
	if err != nil {
		return fmt.Errorf("direct get answered %s with a bad sequence: %w", subject, err)
	}
	created, err := time.Parse(time.RFC3339Nano, m.Header.Get(hdrTimeStamp))
	if err != nil {
		return fmt.Errorf("direct get answered %s with a bad time stamp: %w", subject, err)
	}
	out[i] = Entry{Key: key, Value: m.Data, Revision: seq, Created: created}
	return nil
}
