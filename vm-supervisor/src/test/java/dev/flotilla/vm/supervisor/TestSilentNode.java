package dev.flotilla.vm.supervisor;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.ExitStatus;
import dev.flotilla.agent.protocol.client.FileChunk;
import dev.flotilla.agent.protocol.client.GuestInfo;
import dev.flotilla.agent.protocol.client.GuestStats;
import dev.flotilla.agent.protocol.client.OutputSink;
import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;

/**
 * An {@link AgentConnector} for tests that can make the node fall silent, as a frozen node would:
 * after {@link #silence()} its pings succeed without reaching the agent, so the supervisor goes on
 * as if all were well while the agent's lease runs out.
 */
final class TestSilentNode implements AgentConnector {

  private volatile boolean silent;

  void silence() {
    silent = true;
  }

  @Override
  public AgentClient connect(AgentAddress address, Duration deadline) {
    return new Client(AgentClients.connect(address, deadline));
  }

  private final class Client implements AgentClient {
    private final AgentClient real;

    Client(AgentClient real) {
      this.real = real;
    }

    @Override
    public CompletableFuture<Duration> ping(Duration deadline) {
      return silent ? CompletableFuture.completedFuture(Duration.ZERO) : real.ping(deadline);
    }

    @Override
    public CompletableFuture<GuestInfo> handshake(String sandboxId, long incarnation, Duration lease, Duration deadline) {
      return real.handshake(sandboxId, incarnation, lease, deadline);
    }

    @Override
    public CompletableFuture<Long> exec(ExecRequest request, OutputSink sink, Duration deadline) {
      return real.exec(request, sink, deadline);
    }

    @Override
    public CompletableFuture<Long> execDetached(ExecRequest request, int ringBytes, Duration deadline) {
      return real.execDetached(request, ringBytes, deadline);
    }

    @Override
    public CompletableFuture<dev.flotilla.agent.protocol.client.OutputRead> readOutput(String execId, long offset, int maxBytes,
        Duration wait, Duration deadline) {
      return real.readOutput(execId, offset, maxBytes, wait, deadline);
    }

    @Override
    public CompletableFuture<ExitStatus> waitProcess(String execId, Duration deadline) {
      return real.waitProcess(execId, deadline);
    }

    @Override
    public CompletableFuture<Void> signalProcess(String execId, int signal, Duration deadline) {
      return real.signalProcess(execId, signal, deadline);
    }

    @Override
    public CompletableFuture<Void> writeStdin(String execId, byte[] data, Duration deadline) {
      return real.writeStdin(execId, data, deadline);
    }

    @Override
    public CompletableFuture<Void> closeStdin(String execId, Duration deadline) {
      return real.closeStdin(execId, deadline);
    }

    @Override
    public CompletableFuture<Long> writeFile(String path, InputStream data, int mode, Duration deadline) {
      return real.writeFile(path, data, mode, deadline);
    }

    @Override
    public CompletableFuture<Long> readFile(String path, OutputStream out, Duration deadline) {
      return real.readFile(path, out, deadline);
    }

    @Override
    public CompletableFuture<FileChunk> readFileChunk(String path, long offset, int maxLength, Duration deadline) {
      return real.readFileChunk(path, offset, maxLength, deadline);
    }

    @Override
    public CompletableFuture<GuestStats> stats(Duration deadline) {
      return real.stats(deadline);
    }

    @Override
    public CompletableFuture<Void> shutdown(Duration grace, boolean powerOff, Duration deadline) {
      return real.shutdown(grace, powerOff, deadline);
    }

    @Override
    public CompletableFuture<Void> closed() {
      return real.closed();
    }

    @Override
    public boolean isOpen() {
      return real.isOpen();
    }

    @Override
    public void close() {
      real.close();
    }
  }
}
