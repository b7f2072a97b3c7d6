package transport

import "net/url"

// RedactURL returns raw without what may be secret, for logs and error
// messages: user info ("user:pass@"), the query (where browsers and
// ActionCable clients put tokens) and the fragment. An unparsable URL
// becomes "<invalid URL>", since its parts cannot be told apart.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}
