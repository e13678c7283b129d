package dev.flotilla.cli;

import dev.flotilla.api.v1.GetSandboxRequest;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.PortForwardRequest;
import dev.flotilla.api.v1.PortForwardResponse;
import dev.flotilla.api.v1.PortForwardTarget;
import dev.flotilla.api.v1.WatchSandboxRequest;
import io.grpc.ClientCall;
import io.grpc.Metadata;
import io.grpc.Status;
import java.io.IOException;
import java.io.PrintStream;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.TypeConversionException;

@Command(name = "port-forward", mixinStandardHelpOptions = true,
    description = {"Forward local TCP ports to ports inside a sandbox, like `kubectl port-forward`: every connection "
        + "accepted locally is one PortForward call through the node, which connects to the port on the sandbox's "
        + "own loopback (never another host).",
        "Mappings: LOCAL:REMOTE; PORT (the same port both sides); :REMOTE or 0:REMOTE (a free local port). "
            + "Several may be given.",
        "Prints `Forwarding from ADDRESS:LOCAL -> REMOTE` once per mapping, then runs until interrupted "
            + "(Ctrl-C or SIGTERM: exit 0) or until the sandbox is deleted (exit 1). A connection whose call fails is "
            + "closed and the error printed on stderr; the forwarder goes on."})
final class PortForwardCommand extends TimedCommand {
  /** Bytes read from a local connection per message: well under the node's 256 KiB per message. */
  static final int CHUNK = 64 * 1024;

  @Option(names = "--address", paramLabel = "ADDRESS",
      description = "The local address to listen on (default: 127.0.0.1, this machine only). Anything else lets whoever "
          + "reaches it into the sandbox's ports: say so explicitly, e.g. --address 0.0.0.0.")
  String address = "127.0.0.1";

  @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
  String id;

  @Parameters(index = "1..*", arity = "1..*", paramLabel = "[LOCAL:]REMOTE",
      description = "A port mapping: LOCAL:REMOTE, PORT, or :REMOTE (a free local port).")
  List<String> ports;

  record Mapping(int local, int remote) {}

  /** {@code LOCAL:REMOTE}, {@code PORT}, {@code :REMOTE} or {@code 0:REMOTE}. */
  static Mapping parse(String s) {
    int colon = s.indexOf(':');
    String local = colon < 0 ? s : s.substring(0, colon);
    String remote = colon < 0 ? s : s.substring(colon + 1);
    int r = port(remote, s, 1);
    int l = local.isEmpty() ? 0 : port(local, s, 0);
    return new Mapping(l, r);
  }

  private static int port(String text, String mapping, int min) {
    try {
      int p = Integer.parseInt(text);
      if (p >= min && p <= 65535) return p;
    } catch (NumberFormatException ignored) {
      // said below
    }
    throw new TypeConversionException("'" + mapping + "' is not a port mapping: give LOCAL:REMOTE, PORT or :REMOTE, "
        + "the remote port 1-65535 and the local one 0-65535 (0: a free one)");
  }

  List<Mapping> mappings() {
    List<Mapping> out = new ArrayList<>();
    Set<Integer> locals = new HashSet<>();
    for (String p : ports) {
      Mapping m = parse(p);
      if (m.local() != 0 && !locals.add(m.local())) {
        throw new TypeConversionException("local port " + m.local() + " is given twice");
      }
      out.add(m);
    }
    return out;
  }

  private InetAddress listenAddress() {
    try {
      return InetAddress.getByName(address);
    } catch (UnknownHostException e) {
      throw new TypeConversionException("--address '" + address + "' is not an address of this machine");
    }
  }

  @Override
  void validate() {
    mappings();
    listenAddress();
  }

  @Override
  int run(FlotillaClient client, CliContext ctx) {
    // The sandbox must be there (and the tenant's) before anything listens.
    client.call(SandboxServiceMethods.GET_SANDBOX, GetSandboxRequest.newBuilder().setId(id).build(), id);
    try (Forwarder f = new Forwarder(client, ctx.out(), ctx.err())) {
      return f.run(mappings(), listenAddress());
    }
  }

  /** The listeners, their connections, and what ends them all. */
  private final class Forwarder implements AutoCloseable {
    private final FlotillaClient client;
    private final PrintStream out;
    private final PrintStream err;
    private final CompletableFuture<Integer> exit = new CompletableFuture<>();
    private final List<ServerSocketChannel> listeners = new ArrayList<>();
    private final Set<Connection> open = ConcurrentHashMap.newKeySet();
    private final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> daemon(r, "port-forward-timer"));

    Forwarder(FlotillaClient client, PrintStream out, PrintStream err) {
      this.client = client;
      this.out = out;
      this.err = err;
    }

    int run(List<Mapping> mappings, InetAddress addr) {
      for (Mapping m : mappings) {
        ServerSocketChannel server;
        try {
          server = ServerSocketChannel.open();
          server.bind(new InetSocketAddress(addr, m.local()));
        } catch (IOException e) {
          throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot listen on " + hostPort(addr, m.local()) + ": " + e.getMessage());
        }
        listeners.add(server);
        int local = ((InetSocketAddress) serverAddress(server)).getPort();
        out.println("Forwarding from " + hostPort(addr, local) + " -> " + m.remote());
        Thread t = daemon(() -> accept(server, local, m.remote()), "port-forward-accept-" + local);
        t.start();
      }
      out.flush();
      interrupts();
      watchSandbox();
      try {
        return exit.get();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return ExitCodes.INTERRUPTED;
      } catch (java.util.concurrent.ExecutionException e) {
        if (e.getCause() instanceof CliFailure f) throw f;
        throw new CliFailure(ExitCodes.REQUEST_FAILED, "port-forward failed: " + e.getCause());
      }
    }

    /** Ctrl-C and SIGTERM end the forwarder cleanly: listeners and calls closed, exit 0. */
    private void interrupts() {
      for (String sig : List.of("INT", "TERM")) {
        try {
          sun.misc.Signal.handle(new sun.misc.Signal(sig), s -> exit.complete(ExitCodes.OK));
        } catch (IllegalArgumentException | UnsupportedOperationException unavailable) {
          // not on this platform: the JVM's own handling ends the process
        }
      }
    }

    /** The forwarder ends with its sandbox: deleted (or gone for this tenant) is exit 1 with the reason. */
    private void watchSandbox() {
      daemon(() -> {
        try {
          FlotillaClient.Waited<dev.flotilla.api.v1.SandboxEvent> w = client.streamUntil(SandboxServiceMethods.WATCH_SANDBOX,
              WatchSandboxRequest.newBuilder().setId(id).build(), id, ev -> ev.getSandbox().getPhase() == Phase.DELETED, null);
          if (!exit.isDone()) {
            exit.completeExceptionally(new CliFailure(ExitCodes.REQUEST_FAILED, w.done()
                ? "sandbox " + id + " was deleted; port-forward ends"
                : "the node ended the watch of sandbox " + id + "; port-forward ends"));
          }
        } catch (CliFailure f) {
          exit.completeExceptionally(f);
        } catch (RuntimeException e) {
          exit.completeExceptionally(new CliFailure(ExitCodes.REQUEST_FAILED, "watching sandbox " + id + " failed: " + e));
        }
      }, "port-forward-watch").start();
    }

    private void accept(ServerSocketChannel server, int local, int remote) {
      while (!exit.isDone()) {
        SocketChannel s;
        try {
          s = server.accept();
        } catch (IOException e) {
          if (!exit.isDone()) exit.completeExceptionally(new CliFailure(ExitCodes.REQUEST_FAILED,
              "cannot accept on port " + local + ": " + e.getMessage()));
          return;
        }
        Connection c = new Connection(s, local, remote);
        open.add(c);
        c.start();
      }
    }

    @Override
    public void close() {
      for (ServerSocketChannel s : listeners) {
        try {
          s.close();
        } catch (IOException ignored) {
          // closing
        }
      }
      for (Connection c : List.copyOf(open)) c.cancel("the forwarder ends");
      timer.shutdownNow();
    }

    /** One accepted local connection: one PortForward call. */
    private final class Connection extends ClientCall.Listener<PortForwardResponse> {
      private final SocketChannel socket;
      private final int local;
      private final int remote;
      private final ClientCall<PortForwardRequest, PortForwardResponse> call;
      private final Object ready = new Object();
      private volatile boolean opened;
      private volatile boolean closed;
      private volatile boolean reportCancel;

      Connection(SocketChannel socket, int local, int remote) {
        this.socket = socket;
        this.local = local;
        this.remote = remote;
        this.call = client.newCall(SandboxServiceMethods.PORT_FORWARD);
      }

      void start() {
        try {
          socket.setOption(StandardSocketOptions.TCP_NODELAY, true);
        } catch (IOException ignored) {
          // a nicety
        }
        call.start(this, new Metadata());
        call.request(1);
        call.sendMessage(PortForwardRequest.newBuilder()
            .setTarget(PortForwardTarget.newBuilder().setSandboxId(id).setPort(remote)).build());
        // Only connecting is bounded: once open, a connection lasts as long as its ends want.
        Duration limit = client.connection().timeout();
        timer.schedule(() -> {
          if (!opened && !closed) {
            reportCancel = true;
            cancel("no answer from the node within " + Durations.format(limit) + " (raise --timeout)");
          }
        }, limit.toMillis(), TimeUnit.MILLISECONDS);
        daemon(this::pump, "port-forward-conn-" + local).start();
      }

      /** Local bytes to the node, as fast as the call's flow control takes them; the local end half-closes the call. */
      private void pump() {
        ByteBuffer buf = ByteBuffer.allocate(CHUNK);
        try {
          while (true) {
            buf.clear();
            int n = socket.read(buf);
            if (n < 0) break;
            synchronized (ready) {
              while (!call.isReady() && !closed) ready.wait(1000); // woken by onReady or the call's end
            }
            if (closed) return;
            call.sendMessage(PortForwardRequest.newBuilder()
                .setData(com.google.protobuf.ByteString.copyFrom(buf.array(), 0, n)).build());
          }
          if (!closed) call.halfClose();
        } catch (IOException e) {
          cancel("the local connection failed: " + e.getMessage());
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          cancel("interrupted");
        } catch (IllegalStateException callOver) {
          // the call ended meanwhile: onClose says how
        }
      }

      @Override
      public void onReady() {
        synchronized (ready) {
          ready.notifyAll();
        }
      }

      /** The node's answers to the local socket; the next is asked for only once this one is written. */
      @Override
      public void onMessage(PortForwardResponse m) {
        try {
          switch (m.getKindCase()) {
            case OPENED -> opened = true;
            case DATA -> {
              ByteBuffer b = m.getData().asReadOnlyByteBuffer();
              while (b.hasRemaining()) socket.write(b);
            }
            case EOF -> socket.shutdownOutput();
            default -> { } // added to the API later: nothing to do with it
          }
          call.request(1);
        } catch (IOException e) {
          cancel("the local connection failed: " + e.getMessage());
        }
      }

      @Override
      public void onClose(Status status, Metadata trailers) {
        closed = true;
        synchronized (ready) {
          ready.notifyAll();
        }
        open.remove(this);
        if (!status.isOk()) {
          resetQuietly();
          if (exit.isDone()) return;
          if (status.getCode() == Status.Code.NOT_FOUND) {
            // the sandbox is gone for this tenant: nothing more can be forwarded
            exit.completeExceptionally(client.failureOf(status.asRuntimeException(), id));
            return;
          }
          // A local end that went away is no failure to report; a node's refusal or a connect that timed out is.
          if (status.getCode() != Status.Code.CANCELLED || reportCancel) {
            CliFailure f = client.failureOf(status.asRuntimeException(), id);
            err.println("flotilla: port-forward " + local + " -> " + remote + ": " + f.getMessage());
          }
          return;
        }
        closeQuietly();
      }

      void cancel(String why) {
        call.cancel(why, null);
      }

      private void resetQuietly() {
        try {
          if (socket.isOpen()) socket.setOption(StandardSocketOptions.SO_LINGER, 0);
        } catch (IOException ignored) {
          // closing anyway
        }
        closeQuietly();
      }

      private void closeQuietly() {
        try {
          socket.close();
        } catch (IOException ignored) {
          // closing
        }
      }
    }
  }

  private static java.net.SocketAddress serverAddress(ServerSocketChannel s) {
    try {
      return s.getLocalAddress();
    } catch (IOException e) {
      throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot listen: " + e.getMessage());
    }
  }

  static String hostPort(InetAddress a, int port) {
    if (!(a instanceof Inet6Address)) return a.getHostAddress() + ":" + port;
    String h = a.getHostAddress();
    int zone = h.indexOf('%');
    if (zone >= 0) h = h.substring(0, zone);
    // a run of zero groups as "::", as people write IPv6 addresses (::1, not 0:0:0:0:0:0:0:1)
    h = ("!" + h + "!").replaceFirst("[:!](0(:0)+)[:!]", "::").replace("!", "");
    return "[" + h + "]:" + port;
  }

  private static Thread daemon(Runnable r, String name) {
    Thread t = new Thread(r, name);
    t.setDaemon(true);
    return t;
  }
}
