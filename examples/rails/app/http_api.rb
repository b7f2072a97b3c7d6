# frozen_string_literal: true

require "json"

# Plain HTTP endpoints that let tests drive the server from outside:
#
#   GET  /health      -> 200 "ok"
#   GET  /stats       -> {"connections":n,"connects_total":n,"unauthorized_total":n}
#   POST /broadcast   {"stream":"s","message":any} or {"stream":"s","messages":[...]} -> 204
#   POST /disconnect  {"user":"alice","reconnect":true|false} -> 204
#   POST /restart     -> 204, ActionCable.server.restart: every connection gets
#                        {"type":"disconnect","reason":"server_restart","reconnect":true}
class HttpApi
  def call(env)
    req = Rack::Request.new(env)
    case [req.request_method, req.path_info]
    in ["GET", "/health"] then text(200, "ok")
    in ["GET", "/stats"] then [200, { "Content-Type" => "application/json" }, [JSON.generate(Stats.snapshot)]]
    in ["POST", "/broadcast"] then broadcast(json_body(req))
    in ["POST", "/disconnect"] then disconnect(json_body(req))
    in ["POST", "/restart"] then restart
    else text(404, "not found\n")
    end
  rescue JSON::ParserError, KeyError, TypeError => e
    text(400, "bad request: #{e.message}\n")
  end

  private

  def broadcast(body)
    stream = body.fetch("stream")
    messages = body.key?("messages") ? Array(body["messages"]) : [body.fetch("message")]
    messages.each { |m| ActionCable.server.broadcast(stream, m) }
    logger.info "HTTP broadcast of #{messages.size} message(s) to #{stream}"
    no_content
  end

  def disconnect(body)
    user = body.fetch("user")
    reconnect = body.fetch("reconnect", true)
    remote = ActionCable.server.remote_connections.where(current_user: user)
    # Rails >= 7.1 takes reconnect:, Rails 6.1 just closes the socket (code
    # 1000, no disconnect message), so "reconnect" is ignored there.
    if remote.method(:disconnect).arity.zero?
      remote.disconnect
    else
      remote.disconnect(reconnect: reconnect)
    end
    logger.info "HTTP disconnect of user #{user.inspect} (reconnect=#{reconnect})"
    no_content
  end

  def restart
    ActionCable.server.restart
    logger.info "HTTP restart of ActionCable server"
    no_content
  end

  def json_body(req)
    body = JSON.parse(req.body.read)
    raise TypeError, "body must be a JSON object" unless body.is_a?(Hash)

    body
  end

  def logger
    ActionCable.server.logger
  end

  def no_content
    [204, {}, []]
  end

  def text(status, body)
    [status, { "Content-Type" => "text/plain" }, [body]]
  end
end
