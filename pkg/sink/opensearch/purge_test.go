package opensearch

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestIncomplete(t *testing.T) {
	tests := []struct {
		name      string
		response  string
		oneShard  bool
		wantErr   bool
		wantRetry bool
	}{
		{"complete", `{"_shards":{"total":3,"successful":3,"failed":0}}`, false, false, false},
		{"one shard", `{"_shards":{"total":1,"successful":1,"failed":0}}`, true, false, false},
		{"a shard failed", `{"_shards":{"total":3,"successful":2,"failed":1,"failures":[{}]}}`, false, true, true},
		{"timed out", `{"timed_out":true,"_shards":{"total":1,"successful":1,"failed":0}}`, true, true, true},
		// preference=_shards:N past the last shard searches nothing.
		{"no such shard", `{"_shards":{"total":0,"successful":0,"failed":0}}`, true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got searchResult
			if err := json.Unmarshal([]byte(tt.response), &got); err != nil {
				t.Fatal(err)
			}
			err := incomplete(got, tt.oneShard)
			var r *retryable
			retry := errors.As(err, &r) && !r.busy
			if (err != nil) != tt.wantErr || retry != tt.wantRetry {
				t.Errorf("incomplete = %v, %v; want error %v, retry %v", retry, err, tt.wantErr, tt.wantRetry)
			}
		})
	}
}
