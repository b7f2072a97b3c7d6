# frozen_string_literal: true

# Echoes what it gets, for protocol tests.
class EchoChannel < ApplicationCable::Channel
  def subscribed
    # The subscription params as decoded from the identifier, in the order
    # they were sent (Ruby hashes keep insertion order). Note that this
    # message is sent *before* confirm_subscription, because stream_from
    # defers the confirmation until the pubsub subscription is ready.
    transmit({ params: params.except(:channel) })
    stream_from "echo:#{current_user}"
  end

  # {"action":"echo", ...data} -> {...data, "user": current_user}
  def echo(data)
    transmit data.except("action").merge("user" => current_user)
  end
end
