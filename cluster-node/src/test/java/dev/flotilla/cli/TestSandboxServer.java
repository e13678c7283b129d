package dev.flotilla.cli;

import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.ServerServiceDefinition;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.ServerCalls;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.function.BiConsumer;
import java.util.function.Function;

/**
 * A fake {@code flotilla.v1.SandboxService} (or another service) on a loopback port, answering with whatever each test
 * registers (unregistered methods are UNIMPLEMENTED). Served with the CLI's own method
 * descriptors, so it checks the CLI's side of the wire, not a node's.
 */
final class TestSandboxServer implements AutoCloseable {
  private final ServerServiceDefinition.Builder service;
  /** The authorization header of every call, in order; "" when the call had none. */
  final List<String> authorizations = new CopyOnWriteArrayList<>();
  /** Every request message received, in order. */
  final List<Object> requests = new CopyOnWriteArrayList<>();
  /** The deadline each call arrived with, in order; empty when it had none. */
  final List<Optional<Deadline>> deadlines = new CopyOnWriteArrayList<>();
  private Server server;

  TestSandboxServer() {
    this(SandboxServiceMethods.SERVICE);
  }

  /** A fake of another flotilla service (e.g. {@link TemplateServiceMethods#SERVICE}). */
  TestSandboxServer(String serviceName) {
    service = ServerServiceDefinition.builder(serviceName);
  }

  /** {@code answer} returns the response or throws a StatusRuntimeException. */
  <Q, R> TestSandboxServer unary(MethodDescriptor<Q, R> method, Function<Q, R> answer) {
    service.addMethod(method, ServerCalls.asyncUnaryCall((Q req, StreamObserver<R> out) -> {
      received(req);
      R resp;
      try {
        resp = answer.apply(req);
      } catch (RuntimeException e) {
        out.onError(e);
        return;
      }
      out.onNext(resp);
      out.onCompleted();
    }));
    return this;
  }

  /** A unary call the server never answers: the client's deadline decides. */
  <Q, R> TestSandboxServer silent(MethodDescriptor<Q, R> method) {
    service.addMethod(method, ServerCalls.asyncUnaryCall((Q req, StreamObserver<R> out) ->
        received(req)));
    return this;
  }

  /** {@code body} runs on a server thread and may block; it must complete or fail the stream. */
  <Q, R> TestSandboxServer streaming(MethodDescriptor<Q, R> method,
      BiConsumer<Q, StreamObserver<R>> body) {
    service.addMethod(method, ServerCalls.asyncServerStreamingCall((Q req, StreamObserver<R> out) -> {
      received(req);
      body.accept(req, out);
    }));
    return this;
  }

  /** A client stream: every message is recorded; {@code answer} gets them all once the client is done. */
  <Q, R> TestSandboxServer clientStreaming(MethodDescriptor<Q, R> method, Function<List<Q>, R> answer) {
    service.addMethod(method, ServerCalls.asyncClientStreamingCall((StreamObserver<R> out) -> {
      deadlines.add(Optional.ofNullable(Context.current().getDeadline()));
      List<Q> got = new CopyOnWriteArrayList<>();
      return new StreamObserver<Q>() {
        @Override
        public void onNext(Q value) {
          requests.add(value);
          got.add(value);
        }

        @Override
        public void onError(Throwable t) {}

        @Override
        public void onCompleted() {
          try {
            out.onNext(answer.apply(got));
            out.onCompleted();
          } catch (RuntimeException e) {
            out.onError(e);
          }
        }
      };
    }));
    return this;
  }

  /** A bidirectional stream: every message is recorded; {@code answer} gets them all once the client is done, and its replies go back. */
  <Q, R> TestSandboxServer bidiStreaming(MethodDescriptor<Q, R> method, Function<List<Q>, List<R>> answer) {
    service.addMethod(method, ServerCalls.asyncBidiStreamingCall((StreamObserver<R> out) -> {
      List<Q> got = new CopyOnWriteArrayList<>();
      return new StreamObserver<Q>() {
        @Override
        public void onNext(Q value) {
          requests.add(value);
          got.add(value);
        }

        @Override
        public void onError(Throwable t) {}

        @Override
        public void onCompleted() {
          answer.apply(got).forEach(out::onNext);
          out.onCompleted();
        }
      };
    }));
    return this;
  }

  private void received(Object request) {
    requests.add(request);
    deadlines.add(Optional.ofNullable(Context.current().getDeadline()));
  }

  TestSandboxServer start() {
    ServerInterceptor recordAuth = new ServerInterceptor() {
      @Override
      public <Q, R> ServerCall.Listener<Q> interceptCall(ServerCall<Q, R> call, Metadata headers,
          ServerCallHandler<Q, R> next) {
        String auth = headers.get(FlotillaClient.AUTHORIZATION);
        authorizations.add(auth == null ? "" : auth);
        return next.startCall(call, headers);
      }
    };
    try {
      server = NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0))
          .addService(ServerInterceptors.intercept(service.build(), recordAuth))
          .build()
          .start();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return this;
  }

  String endpoint() {
    return "127.0.0.1:" + server.getPort();
  }

  @Override
  public void close() {
    if (server != null) {
      server.shutdownNow();
      try {
        server.awaitTermination(5, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }
}
