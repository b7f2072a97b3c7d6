# frozen_string_literal: true

# Identifier: {"channel":"NumbersChannel","stream":"s1"}. Tests broadcast
# numbered messages to "numbers:s1" through POST /broadcast.
class NumbersChannel < ApplicationCable::Channel
  def subscribed
    stream_from "numbers:#{params[:stream]}"
  end
end
