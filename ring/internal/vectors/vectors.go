// Package vectors reads the hostcall payloads the Go SDK encodes (its shared vectors file), so
// the providers' tests can check that they decode what the SDK sends.
package vectors

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Load returns the payloads of the vectors file for provider, by name.
func Load(t testing.TB, provider uint32) map[string][]byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "..", "sdk", "go", "internal", "hostcall", "testdata", "vectors.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("cannot read the SDK's vectors: %v", err)
	}
	var all map[string]struct {
		Provider uint32 `json:"provider"`
		Payload  string `json:"payload"`
	}
	if err := json.Unmarshal(data, &all); err != nil {
		t.Fatalf("cannot decode %s: %v", path, err)
	}
	out := map[string][]byte{}
	for name, v := range all {
		if v.Provider != provider {
			continue
		}
		b, err := hex.DecodeString(v.Payload)
		if err != nil {
			t.Fatalf("vector %q: %v", name, err)
		}
		out[name] = b
	}
	return out
}
