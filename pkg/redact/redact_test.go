package redact

import "testing"

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text", "plain text"},
		{"postgres://u:s3cret@db:5432/x", "postgres://u:xxxxx@db:5432/x"},
		{"postgres://u:p@ss@db/x", "postgres://u:xxxxx@db/x"},
		{"postgres://u@db/x?password=s3cret&sslmode=disable", "postgres://u@db/x?password=xxxxx&sslmode=disable"},
		{"postgres://u@db/x?sslmode=require&sslpassword=keypw", "postgres://u@db/x?sslmode=require&sslpassword=xxxxx"},
		{"host=db user=u password=s3cret dbname=x", "host=db user=u password=xxxxx dbname=x"},
		{"host=db password='a b\\'c' dbname=x", "host=db password=xxxxx dbname=x"},
		{"host=db sslpassword=keypw", "host=db sslpassword=xxxxx"},
		{"connect nats://alice:pw@nats:4222: refused", "connect nats://alice:xxxxx@nats:4222: refused"},
		{"connect nats://s3cretToken@nats:4222", "connect nats://xxxxx@nats:4222"},
		{"GET http://admin:hunter2@127.0.0.1:9465/indexes", "GET http://admin:xxxxx@127.0.0.1:9465/indexes"},
		{"http://127.0.0.1:9200 is fine", "http://127.0.0.1:9200 is fine"},
		{"the password field is required", "the password field is required"},
	} {
		if got := String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestKey(t *testing.T) {
	for k, want := range map[string]bool{"password": true, "PRIMARY_OPENSEARCH_PASSWORD": true, "api_key": true, "url": false, "index": false} {
		if Key(k) != want {
			t.Errorf("Key(%q) = %v", k, !want)
		}
	}
}
