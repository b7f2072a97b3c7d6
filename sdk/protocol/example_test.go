package protocol_test

import (
	"fmt"

	"github.com/cableway/cableway/sdk/protocol"
)

func ExampleNewIdentifier() {
	// The channel comes first, then the params in the order given: Rails
	// compares identifiers byte for byte, so the order is part of it.
	id, err := protocol.NewIdentifier("ChatChannel", "room", "lobby", "user_id", 42)
	if err != nil {
		panic(err)
	}
	fmt.Println(id)

	_, err = protocol.NewIdentifier("ChatChannel", "room")
	fmt.Println(err)
	// Output:
	// {"channel":"ChatChannel","room":"lobby","user_id":42}
	// protocol: NewIdentifier: params must be key, value pairs; got 1 items
}

func ExampleJSONCodec_DecodeMessage() {
	frames := []string{
		`{"type":"welcome"}`,
		`{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","type":"confirm_subscription"}`,
		`{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","message":{"user":"alice","text":"hi"}}`,
		`{"type":"disconnect","reason":"unauthorized","reconnect":false}`,
		`{"type":"surprise"}`,
	}
	var codec protocol.JSONCodec
	var m protocol.Message // reused for every frame
	for _, f := range frames {
		if err := codec.DecodeMessage([]byte(f), &m); err != nil {
			fmt.Println("error:", err)
			continue
		}
		switch m.Type {
		case protocol.TypeWelcome:
			fmt.Println("welcome")
		case protocol.TypeConfirm:
			fmt.Printf("subscribed to %s\n", m.Identifier)
		case protocol.TypeMessage:
			fmt.Printf("message for %s: %s\n", m.Identifier, m.Body)
		case protocol.TypeDisconnect:
			fmt.Printf("disconnect: reason %q, reconnect %v\n", m.Reason, m.Reconnect)
		}
	}
	// Output:
	// welcome
	// subscribed to {"channel":"ChatChannel","room":"lobby"}
	// message for {"channel":"ChatChannel","room":"lobby"}: {"user":"alice","text":"hi"}
	// disconnect: reason "unauthorized", reconnect false
	// error: protocol: unknown frame type "surprise" (actioncable-v1-json)
}

func ExamplePayload_Decode() {
	type chat struct {
		User string `json:"user"`
		Text string `json:"text"`
	}
	var m protocol.Message

	// A JSON frame.
	jsonFrame := []byte(`{"identifier":"{\"channel\":\"ChatChannel\"}","message":{"user":"alice","text":"hi"}}`)
	if err := (protocol.JSONCodec{}).DecodeMessage(jsonFrame, &m); err != nil {
		panic(err)
	}
	var c chat
	if err := m.Body.Decode(&c); err != nil {
		panic(err)
	}
	fmt.Printf("%s: %+v\n", m.Body.Format(), c)

	// The same frame re-encoded with the MessagePack codec: the same struct
	// and its json tags serve both.
	mpFrame, err := (protocol.MessagePackCodec{}).AppendMessage(nil, &m)
	if err != nil {
		panic(err)
	}
	if err := (protocol.MessagePackCodec{}).DecodeMessage(mpFrame, &m); err != nil {
		panic(err)
	}
	c = chat{}
	if err := m.Body.Decode(&c); err != nil {
		panic(err)
	}
	fmt.Printf("%s: %+v\n", m.Body.Format(), c)
	// Output:
	// json: {User:alice Text:hi}
	// msgpack: {User:alice Text:hi}
}
