package sse

import "testing"

func TestAppendDataSplitsEveryLineEnd(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"a":1}`, "data: {\"a\":1}\n\n"},
		{"", "data: \n\n"},
		{"a\nb", "data: a\ndata: b\n\n"},
		{"a\rb", "data: a\ndata: b\n\n"},
		{"a\r\nb", "data: a\ndata: b\n\n"},
		{"a\n\rb", "data: a\ndata: \ndata: b\n\n"},
		{"a\r", "data: a\ndata: \n\n"},
	} {
		if got := string(AppendData([]byte("x"), []byte(tc.in))); got != "x"+tc.want {
			t.Errorf("AppendData(%q) = %q, want %q", tc.in, got, "x"+tc.want)
		}
	}
}
