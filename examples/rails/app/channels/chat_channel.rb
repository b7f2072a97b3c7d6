# frozen_string_literal: true

# A chat room. Identifier: {"channel":"ChatChannel","room":"lobby"}.
class ChatChannel < ApplicationCable::Channel
  def subscribed
    return reject if room.blank?

    stream_from "chat:#{room}"
  end

  # {"action":"speak","text":"hi"} -> everyone in the room receives
  # {"user":"alice","text":"hi","room":"lobby"}.
  def speak(data)
    ActionCable.server.broadcast "chat:#{room}",
                                 { user: current_user, text: data["text"], room: room }
  end

  private

  def room
    params[:room]
  end
end
