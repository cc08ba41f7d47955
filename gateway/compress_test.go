package gateway

import "testing"

func TestAcceptedEncoding(t *testing.T) {
	tests := []struct {
		in   string
		want encoding
	}{
		{"", encIdentity},
		{"identity", encIdentity},
		{"gzip", encGzip},
		{"GZIP", encGzip},
		{"gzip, deflate, br, zstd", encZstd},
		{"zstd;q=0, gzip", encGzip},
		{"gzip;q=0", encIdentity},
		{"gzip;q=0.000", encIdentity},
		{"gzip;q=0.5", encGzip},
		{"br", encIdentity},
		{" zstd ", encZstd},
	}
	for _, tt := range tests {
		if got := acceptedEncoding([]byte(tt.in)); got != tt.want {
			t.Errorf("acceptedEncoding(%q) = %d; want %d", tt.in, got, tt.want)
		}
	}
}

func TestCompressible(t *testing.T) {
	yes := []string{"", "text/plain", "text/html; charset=utf-8", "application/json", "application/problem+json", "image/svg+xml"}
	no := []string{"image/png", "application/octet-stream", "application/zip", "video/mp4"}
	for _, ct := range yes {
		if !compressible([]byte(ct)) {
			t.Errorf("compressible(%q) = false", ct)
		}
	}
	for _, ct := range no {
		if compressible([]byte(ct)) {
			t.Errorf("compressible(%q) = true", ct)
		}
	}
}
