# frozen_string_literal: true

# A minimal ActionCable server without a full Rails application: only the
# system (Debian) gems are needed, loaded with plain require (no Bundler).
# Start it with ./run [PORT]; see README.md.

$stdout.sync = true

require "action_cable"
require "action_dispatch"
require "action_dispatch/middleware/cookies" # Request#cookie_jar, for Connection#cookies
require "active_support/core_ext/object/blank"

app_dir = File.join(__dir__, "app")
require File.join(app_dir, "stats")
require File.join(app_dir, "http_api")
require File.join(app_dir, "channels/application_cable/connection")
require File.join(app_dir, "channels/application_cable/channel")
%w[chat echo reject numbers].each { |c| require File.join(app_dir, "channels/#{c}_channel") }

logger = ActiveSupport::TaggedLogging.new(ActiveSupport::Logger.new($stdout))
logger.level = ENV.fetch("RAILS_LOG_LEVEL", "info")

cable = ActionCable.server.config
cable.logger = logger
cable.connection_class = -> { ApplicationCable::Connection }
cable.worker_pool_size = Integer(ENV.fetch("CABLE_WORKER_POOL_SIZE", "4"))
# "inline" is "async" without the thread hop per broadcast; with a single
# worker it keeps broadcasts in order (see README.md, Facts measured).
adapter = ENV.fetch("CABLE_ADAPTER", "async")
cable.cable =
  case adapter
  when "async", "inline" then { "adapter" => adapter }
  when "redis"
    { "adapter" => "redis", "url" => ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379/1"),
      "channel_prefix" => "cableway_example" }
  else abort "CABLE_ADAPTER must be async, inline or redis"
  end

# ALLOWED_ORIGINS: comma separated exact origins, or "*" to accept any Origin
# (or none). Default: any port on 127.0.0.1 or localhost over http. As in
# Rails, an Origin equal to "http://<Host header>" is always accepted.
origins = ENV.fetch("ALLOWED_ORIGINS", "")
if origins.strip == "*"
  cable.disable_request_forgery_protection = true
elsif origins.strip.empty?
  cable.allowed_request_origins = [%r{\Ahttp://(127\.0\.0\.1|localhost)(:\d+)?\z}]
else
  cable.allowed_request_origins = origins.split(",").map(&:strip).reject(&:empty?)
end

logger.info "ActionCable #{ActionCable::VERSION::STRING}, adapter=#{cable.cable["adapter"]}, " \
            "workers=#{cable.worker_pool_size}, origins=#{origins.strip.empty? ? "127.0.0.1/localhost" : origins}"

map "/cable" do
  run ActionCable.server
end
run HttpApi.new
