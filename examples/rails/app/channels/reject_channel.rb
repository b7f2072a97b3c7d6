# frozen_string_literal: true

# Every subscription is refused: the client gets reject_subscription.
class RejectChannel < ApplicationCable::Channel
  def subscribed
    reject
  end
end
