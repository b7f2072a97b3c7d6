# frozen_string_literal: true

# Process-wide connection counters served by GET /stats. Tests use them to
# check that a client really reached (or never reached) Rails and that no
# socket is left open.
module Stats
  @mutex = Mutex.new
  @connections = 0
  @connects_total = 0
  @unauthorized_total = 0

  class << self
    def connected
      @mutex.synchronize do
        @connections += 1
        @connects_total += 1
      end
    end

    def disconnected
      @mutex.synchronize { @connections -= 1 }
    end

    def unauthorized
      @mutex.synchronize { @unauthorized_total += 1 }
    end

    def snapshot
      @mutex.synchronize do
        { connections: @connections, connects_total: @connects_total,
          unauthorized_total: @unauthorized_total }
      end
    end
  end
end
