package health

import (
	"errors"
	"testing"
	"time"
)

func TestStage(t *testing.T) {
	r := NewRegistry()
	s := r.Stage("sink.primary")
	if got := s.Report(); got.State != OK || got.Since != nil || got.LastError != "" {
		t.Fatalf("new stage: %+v", got)
	}
	s.Fail(errors.New("bulk to http://u:pw@os:9200: 429 Too Many Requests"))
	first := *s.Report().Since
	time.Sleep(time.Millisecond)
	s.Fail(errors.New("bulk: 503"))
	got := s.Report()
	if got.State != Degraded || !got.Since.Equal(first) || got.LastError != "bulk: 503" || got.Failures != 2 {
		t.Fatalf("after two failures: %+v (since %v, first %v)", got, got.Since, first)
	}
	if d := r.DegradedFor(time.Hour, time.Now()); len(d) != 0 {
		t.Fatalf("degraded past an hour's grace: %+v", d)
	}
	if d := r.DegradedFor(0, time.Now().Add(time.Second)); len(d) != 1 || d[0].Stage != "sink.primary" {
		t.Fatalf("degraded past no grace: %+v", d)
	}
	s.OK()
	if got := s.Report(); got.State != OK || got.Since != nil || got.LastError != "bulk: 503" {
		t.Fatalf("after recovery: %+v", got)
	}
	if r.Stage("sink.primary") != s {
		t.Fatal("Stage registered a second stage under one name")
	}
}

func TestRedacted(t *testing.T) {
	s := NewRegistry().Stage("capture")
	s.Fail(errors.New("connect postgres://flusso:hunter2@db/x: refused"))
	if got := s.Report().LastError; got != "connect postgres://flusso:xxxxx@db/x: refused" {
		t.Fatalf("last error %q", got)
	}
}

func TestNil(t *testing.T) {
	var r *Registry
	s := r.Stage("x")
	s.Fail(errors.New("ignored"))
	s.OK()
	if r.Reports() != nil {
		t.Fatal("nil registry reported stages")
	}
}
