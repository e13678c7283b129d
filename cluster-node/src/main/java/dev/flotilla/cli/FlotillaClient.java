package dev.flotilla.cli;

import dev.flotilla.node.tls.PemFiles;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientInterceptors;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.ClientCall;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.netty.handler.ssl.SslContext;
import io.grpc.netty.shaded.io.netty.handler.ssl.SslContextBuilder;
import io.grpc.netty.shaded.io.netty.handler.ssl.SslProvider;
import io.grpc.netty.shaded.io.netty.channel.ChannelOption;
import io.grpc.netty.shaded.io.netty.channel.nio.NioEventLoopGroup;
import io.grpc.netty.shaded.io.netty.channel.socket.nio.NioSocketChannel;
import io.grpc.netty.shaded.io.netty.util.concurrent.DefaultThreadFactory;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.MetadataUtils;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.Iterator;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * One channel (plaintext, or TLS with {@code --tls}) to one node for one CLI invocation. Unary
 * calls get the {@code --timeout} deadline; streams (exec, watch) run as long as the node keeps
 * them open, and only connecting is bounded. Every failure comes out as a {@link CliFailure} phrased for the user.
 */
public final class FlotillaClient implements AutoCloseable {
  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private final ClientOptions.Connection connection;
  private final NioEventLoopGroup group;
  private final ManagedChannel channel;
  private final Channel calls;

  public FlotillaClient(ClientOptions.Connection connection) {
    this.connection = connection;
    Endpoint ep = connection.endpoint();
    InetSocketAddress address = new InetSocketAddress(ep.host(), ep.port());
    if (address.isUnresolved()) {
      throw new CliFailure(ExitCodes.UNAVAILABLE,
          "cannot reach a node at " + ep + ": unknown host " + ep.host());
    }
    // NIO rather than the native transport: loading the native library costs startup time,
    // and one connection gains nothing from it.
    this.group = new NioEventLoopGroup(1, new DefaultThreadFactory("flotilla-cli", true));
    NettyChannelBuilder builder = NettyChannelBuilder.forAddress(address);
    if (connection.tls() == null) {
      builder.usePlaintext();
    } else {
      builder.useTransportSecurity().sslContext(sslContext(connection.tls()))
          // the certificate is checked against the host as the user wrote it, not a resolved name
          .overrideAuthority(ep.toString());
    }
    this.channel = builder
        .eventLoopGroup(group)
        .channelType(NioSocketChannel.class)
        .withOption(ChannelOption.CONNECT_TIMEOUT_MILLIS,
            (int) Math.min(Integer.MAX_VALUE, connection.timeout().toMillis()))
        .userAgent("flotilla-cli")
        .build();
    Metadata headers = new Metadata();
    if (connection.token() != null) {
      headers.put(AUTHORIZATION, "Bearer " + connection.token());
    }
    this.calls = ClientInterceptors.intercept(channel,
        MetadataUtils.newAttachHeadersInterceptor(headers));
  }

  /**
   * The JDK's TLS rather than the bundled BoringSSL: loading a native library costs more startup
   * than one handshake does. TLS 1.3 and 1.2, HTTP/2 by ALPN.
   */
  static SslContext sslContext(ClientOptions.Tls tls) {
    try {
      SslContextBuilder b = GrpcSslContexts.configure(SslContextBuilder.forClient(), SslProvider.JDK);
      if (tls.ca() != null) b.trustManager(PemFiles.trustManagers(tls.ca()));
      if (tls.cert() != null) b.keyManager(PemFiles.keyManagers(tls.cert(), tls.key()));
      return b.build();
    } catch (IOException e) {
      throw new CliFailure(ExitCodes.USAGE, e.getMessage());
    }
  }

  public ClientOptions.Connection connection() {
    return connection;
  }

  /** A unary call with the deadline; {@code sandboxId} (may be null) names it in a NOT_FOUND. */
  public <Q, R> R call(MethodDescriptor<Q, R> method, Q request, String sandboxId) {
    Duration timeout = connection.timeout();
    try {
      return ClientCalls.blockingUnaryCall(calls, method,
          CallOptions.DEFAULT.withDeadlineAfter(timeout.toMillis(), TimeUnit.MILLISECONDS), request);
    } catch (StatusRuntimeException e) {
      throw failure(e, sandboxId);
    }
  }

  /**
   * A server stream, handed over message by message as each arrives, until the node ends it.
   * Ctrl-C shuts the channel down first, so the node sees the call cancelled (and, for exec,
   * can stop the process) instead of a connection that silently went away.
   */
  public <Q, R> void stream(MethodDescriptor<Q, R> method, Q request, String sandboxId,
      Consumer<R> onMessage) {
    streamUntil(method, request, sandboxId, m -> {
      onMessage.accept(m);
      return false;
    }, null);
  }

  /** What {@link #streamUntil} saw: its last message (null if none), and whether it was the one waited for. */
  public record Waited<R>(R last, boolean done) {}

  /**
   * A server stream read until {@code done} accepts a message (the call is then cancelled), the
   * node ends it, or {@code deadline} (null: none) passes; Ctrl-C cancels it as for {@link #stream}.
   */
  public <Q, R> Waited<R> streamUntil(MethodDescriptor<Q, R> method, Q request, String sandboxId,
      java.util.function.Predicate<R> done, Duration deadline) {
    Thread cancelOnExit = new Thread(this::cancelAll, "flotilla-cli-cancel");
    Runtime.getRuntime().addShutdownHook(cancelOnExit);
    io.grpc.Context.CancellableContext scope = io.grpc.Context.current().withCancellation();
    R last = null;
    try {
      io.grpc.Context previous = scope.attach();
      try {
        CallOptions options = deadline == null ? CallOptions.DEFAULT
            : CallOptions.DEFAULT.withDeadlineAfter(deadline.toMillis(), TimeUnit.MILLISECONDS);
        Iterator<R> it = ClientCalls.blockingServerStreamingCall(calls, method, options, request);
        while (it.hasNext()) {
          last = it.next();
          if (done.test(last)) return new Waited<>(last, true);
        }
        return new Waited<>(last, false);
      } finally {
        scope.detach(previous);
      }
    } catch (StatusRuntimeException e) {
      if (deadline != null && e.getStatus().getCode() == Status.Code.DEADLINE_EXCEEDED) return new Waited<>(last, false);
      throw failure(e, sandboxId);
    } finally {
      scope.cancel(null); // ends the call if it is still open (done, or the caller gave up)
      try {
        Runtime.getRuntime().removeShutdownHook(cancelOnExit);
      } catch (IllegalStateException shuttingDown) {
        // the hook is already running: nothing to undo
      }
    }
  }

  /**
   * A client stream with the deadline: {@code requests} are sent as the transport is ready for
   * them (a large upload is never buffered in memory), then the node's one answer is returned.
   * Ctrl-C cancels the call, as for {@link #stream}.
   */
  public <Q, R> R clientStream(MethodDescriptor<Q, R> method, Iterator<Q> requests, String sandboxId) {
    Thread cancelOnExit = new Thread(this::cancelAll, "flotilla-cli-cancel");
    Runtime.getRuntime().addShutdownHook(cancelOnExit);
    CompletableFuture<R> answer = new CompletableFuture<>();
    Object ready = new Object();
    ClientCall<Q, R> call = calls.newCall(method,
        CallOptions.DEFAULT.withDeadlineAfter(connection.timeout().toMillis(), TimeUnit.MILLISECONDS));
    ClientResponseObserver<Q, R> responses = new ClientResponseObserver<>() {
      @Override
      public void beforeStart(ClientCallStreamObserver<Q> requestStream) {
        requestStream.setOnReadyHandler(() -> {
          synchronized (ready) {
            ready.notifyAll();
          }
        });
      }

      @Override
      public void onNext(R value) {
        answer.complete(value);
      }

      @Override
      public void onError(Throwable t) {
        answer.completeExceptionally(t);
        synchronized (ready) {
          ready.notifyAll();
        }
      }

      @Override
      public void onCompleted() {
        answer.completeExceptionally(Status.INTERNAL.withDescription("the node ended the call without an answer").asRuntimeException());
      }
    };
    @SuppressWarnings("unchecked")
    ClientCallStreamObserver<Q> out = (ClientCallStreamObserver<Q>) ClientCalls.asyncClientStreamingCall(call, responses);
    try {
      while (!answer.isDone() && requests.hasNext()) {
        synchronized (ready) {
          // woken by the transport's onReady or the call's end; the bounded wait only re-checks
          while (!out.isReady() && !answer.isDone()) ready.wait(1000);
        }
        if (answer.isDone()) break;
        out.onNext(requests.next());
      }
      if (!answer.isDone()) out.onCompleted();
      return answer.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      out.cancel("interrupted", e);
      throw new CliFailure(ExitCodes.INTERRUPTED, null);
    } catch (ExecutionException e) {
      if (e.getCause() instanceof StatusRuntimeException s) throw failure(s, sandboxId);
      throw failure(Status.fromThrowable(e.getCause()).asRuntimeException(), sandboxId);
    } catch (RuntimeException e) {
      out.cancel("the client failed", e);
      throw e;
    } finally {
      try {
        Runtime.getRuntime().removeShutdownHook(cancelOnExit);
      } catch (IllegalStateException shuttingDown) {
        // the hook is already running: nothing to undo
      }
    }
  }

  /**
   * A bidirectional stream without a deadline (it lasts as long as its user): the caller sends on
   * the returned observer (not thread-safe: one sender at a time) and gets the node's messages on
   * {@code responses}. Ctrl-C (the JVM's shutdown) cancels it as for {@link #stream}, until
   * {@link #endBidi} is called with the hook this returns through {@code hook}.
   */
  public <Q, R> ClientCallStreamObserver<Q> bidiStream(MethodDescriptor<Q, R> method, ClientResponseObserver<Q, R> responses,
      Thread[] hook) {
    Thread cancelOnExit = new Thread(this::cancelAll, "flotilla-cli-cancel");
    Runtime.getRuntime().addShutdownHook(cancelOnExit);
    hook[0] = cancelOnExit;
    @SuppressWarnings("unchecked")
    ClientCallStreamObserver<Q> out = (ClientCallStreamObserver<Q>) ClientCalls.asyncBidiStreamingCall(
        calls.newCall(method, CallOptions.DEFAULT), responses);
    return out;
  }

  /** The stream of {@link #bidiStream} is over: Ctrl-C no longer needs to cancel it. */
  static void endBidi(Thread hook) {
    try {
      Runtime.getRuntime().removeShutdownHook(hook);
    } catch (IllegalStateException shuttingDown) {
      // the hook is already running: nothing to undo
    }
  }

  /** A failed call as the user should read it; {@code sandboxId} (may be null) names it in a NOT_FOUND. */
  CliFailure failureOf(Throwable t, String sandboxId) {
    return failure(t instanceof StatusRuntimeException s ? s : Status.fromThrowable(t).asRuntimeException(), sandboxId);
  }

  private CliFailure failure(StatusRuntimeException e, String sandboxId) {
    // A TLS port hangs up on a plaintext HTTP/2 preface without a word.
    if (connection.tls() == null && e.getStatus().getCode() == Status.Code.UNAVAILABLE
        && String.valueOf(e.getStatus().getDescription()).contains("Network closed for unknown reason")) {
      return new CliFailure(ExitCodes.UNAVAILABLE, "cannot reach a node at " + connection.endpoint()
          + ": it closed the connection at once (does it serve TLS? then add --tls and --ca, or FLOTILLA_TLS=1 and FLOTILLA_CA)");
    }
    return StatusMessages.toFailure(e.getStatus(), new StatusMessages.Call(
        connection.endpoint().toString(), sandboxId, connection.timeout(), connection.tokenSource()));
  }

  /** Cancels every call and gives the cancellation a moment to reach the node. */
  private void cancelAll() {
    channel.shutdownNow();
    try {
      channel.awaitTermination(500, TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public void close() {
    cancelAll();
    group.shutdownGracefully(0, 0, TimeUnit.MILLISECONDS);
  }
}
