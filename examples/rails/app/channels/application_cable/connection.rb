# frozen_string_literal: true

module ApplicationCable
  # Authenticates every WebSocket connection. The user name comes from the
  # first credential present, in this order:
  #
  #   1. cookie        user=<name>
  #   2. query param   token=secret-<name>
  #   3. header        Authorization: Bearer secret-<name>
  #   4. header        X-User: <name>
  #
  # The first credential found decides: a bad token is rejected even if a
  # later source would have been valid. No credential at all is rejected too.
  class Connection < ActionCable::Connection::Base
    identified_by :current_user

    TOKEN_PREFIX = "secret-"

    def connect
      self.current_user = find_user
      if current_user
        @counted = true
        Stats.connected
        logger.info "Connection authenticated as #{current_user.inspect}"
      else
        Stats.unauthorized
        logger.info "Connection rejected: no valid credentials"
        reject_unauthorized_connection
      end
    end

    # Called for rejected connections too, hence the @counted guard.
    def disconnect
      Stats.disconnected if @counted
    end

    private

    def find_user
      if (name = cookies[:user]).present?
        name
      elsif (token = request.params["token"]).present?
        user_from_token(token)
      elsif (auth = request.headers["Authorization"]).present?
        auth.start_with?("Bearer ") ? user_from_token(auth.delete_prefix("Bearer ").strip) : nil
      elsif (name = request.headers["X-User"]).present?
        name
      end
    end

    def user_from_token(token)
      name = token.delete_prefix(TOKEN_PREFIX)
      token.start_with?(TOKEN_PREFIX) && !name.empty? ? name : nil
    end
  end
end
