package bridgeconn

// Offer carries a bridge transport's downstream (its settings included)
// to package fallback, which moves bridged connections between
// downstreams, without a public method whose type users cannot name.
// sse.Transport and longpoll.Transport embed it under an unexported
// alias: its method is unexported, so nothing of it shows in their API.
type Offer struct{ d Downstream }

// NewOffer returns an Offer of d.
func NewOffer(d Downstream) Offer { return Offer{d} }

func (o Offer) downstream() Downstream { return o.d }

// DownstreamOf returns the downstream a transport offers (see Offer), if
// it is a bridge transport.
func DownstreamOf(t any) (Downstream, bool) {
	o, ok := t.(interface{ downstream() Downstream })
	if !ok {
		return nil, false
	}
	return o.downstream(), true
}
