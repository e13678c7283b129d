package dev.flotilla.vm.supervisor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentException;
import dev.flotilla.agent.protocol.client.DirWatch;
import dev.flotilla.agent.protocol.client.FsEvent;
import dev.flotilla.agent.protocol.client.WatchListener;
import dev.flotilla.sandbox.protocol.FsChange;
import dev.flotilla.sandbox.protocol.FsValue;
import dev.flotilla.sandbox.protocol.WatchStarted;
import java.lang.reflect.Proxy;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.apache.pekko.stream.Materializer;
import org.apache.pekko.stream.SourceRef;
import org.apache.pekko.stream.javadsl.Sink;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@link AgentStreams#watchDir}: the agent's watch events (pushed on its reader thread, which must
 * never block) as a stream with WatchStarted first, a bounded buffer whose overflow is counted
 * rather than lost silently, and the agent's watch cancelled when the reader goes.
 */
class AgentStreamsWatchTest {
  private static ActorTestKit kit;
  private static Materializer mat;
  private static VmSupervisor.Settings settings;

  @BeforeAll
  static void start() {
    kit = ActorTestKit.create();
    mat = Materializer.matFromSystem(kit.system());
    settings = VmSupervisor.Settings.create(kit.system());
  }

  @AfterAll
  static void stop() {
    kit.shutdownTestKit();
  }

  /** An agent client that only watches: the test drives the listener and sees the cancel. */
  static final class FakeAgent {
    final CompletableFuture<DirWatch> started = new CompletableFuture<>();
    volatile WatchListener listener;
    final AtomicInteger cancels = new AtomicInteger();
    final CompletableFuture<String> ended = new CompletableFuture<>();

    AgentClient client() {
      return (AgentClient) Proxy.newProxyInstance(AgentClient.class.getClassLoader(), new Class<?>[] {AgentClient.class},
          (proxy, method, args) -> {
            if (!method.getName().equals("watchDir")) throw new UnsupportedOperationException(method.getName());
            listener = (WatchListener) args[2];
            return started;
          });
    }

    void run(String path) {
      started.complete(new DirWatch() {
        @Override
        public String path() {
          return path;
        }

        @Override
        public int watchedDirs() {
          return 2;
        }

        @Override
        public boolean partial() {
          return false;
        }

        @Override
        public CompletableFuture<Void> cancel(Duration deadline) {
          cancels.incrementAndGet();
          ended.complete("cancelled");
          return CompletableFuture.completedFuture(null);
        }

        @Override
        public CompletableFuture<String> ended() {
          return ended;
        }
      });
    }
  }

  static FsEvent created(String p) {
    return new FsEvent(FsEvent.Kind.CREATED, p, 0);
  }

  static <T> T get(CompletionStage<T> s) throws Exception {
    return s.toCompletableFuture().get(10, TimeUnit.SECONDS);
  }

  @Test
  void eventsBeforeTheWatchRunsFollowItsStartInOrderAndTheEndEndsTheStream() throws Exception {
    FakeAgent agent = new FakeAgent();
    CompletionStage<SourceRef<FsValue>> ref = AgentStreams.watchDir(agent.client(), "/w", true, settings, mat);
    agent.listener.onEvents(List.of(created("a"), created("b")));
    agent.run("/w");
    agent.listener.onEvents(List.of(new FsEvent(FsEvent.Kind.DELETED, "a", 0)));
    agent.listener.onEnd("directory removed");
    List<FsValue> all = get(get(ref).getSource().runWith(Sink.seq(), mat));
    assertEquals(List.of(new WatchStarted("/w", 2, false), new FsChange(FsChange.Kind.CREATED, "a", 0),
        new FsChange(FsChange.Kind.CREATED, "b", 0), new FsChange(FsChange.Kind.DELETED, "a", 0)), all);
  }

  @Test
  void aWatchThatCannotStartFailsWithTheAgentsError() {
    FakeAgent agent = new FakeAgent();
    CompletionStage<SourceRef<FsValue>> ref = AgentStreams.watchDir(agent.client(), "/nope", false, settings, mat);
    agent.started.completeExceptionally(new AgentException(AgentException.Code.NOT_FOUND, "no such directory"));
    Exception e = org.junit.jupiter.api.Assertions.assertThrows(Exception.class, () -> get(ref));
    AgentException cause = assertInstanceOf(AgentException.class, AgentStreams.unwrap(e));
    assertEquals(AgentException.Code.NOT_FOUND, cause.code());
  }

  @Test
  void theReaderGoingCancelsTheWatchInTheAgent() throws Exception {
    FakeAgent agent = new FakeAgent();
    CompletionStage<SourceRef<FsValue>> ref = AgentStreams.watchDir(agent.client(), "/w", false, settings, mat);
    agent.run("/w");
    agent.listener.onEvents(List.of(created("a")));
    assertEquals(2, get(get(ref).getSource().take(2).runWith(Sink.seq(), mat)).size());
    Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> agent.cancels.get() == 1);
  }

  @Test
  void eventsPastTheBufferAreCountedInOneOverflowBeforeTheNextThatFits() throws Exception {
    FakeAgent agent = new FakeAgent();
    CompletionStage<SourceRef<FsValue>> ref = AgentStreams.watchDir(agent.client(), "/w", false, settings, mat);
    agent.run("/w");
    int pushed = 3 * AgentStreams.WATCH_BUFFER;
    List<FsEvent> burst = new ArrayList<>();
    for (int i = 0; i < pushed; i++) burst.add(created("f" + i));
    agent.listener.onEvents(burst); // nobody reads yet: most of it cannot be held
    ConcurrentLinkedQueue<FsValue> seen = new ConcurrentLinkedQueue<>();
    get(ref).getSource().runForeach(seen::add, mat);
    AtomicInteger more = new AtomicInteger();
    // Once the reader has made room, the next event is preceded by the count of those dropped.
    Awaitility.await().atMost(Duration.ofSeconds(10)).until(() -> {
      agent.listener.onEvents(List.of(created("last" + more.getAndIncrement())));
      List<FsValue> now = List.copyOf(seen);
      return now.stream().anyMatch(v -> v instanceof FsChange c && c.kind() == FsChange.Kind.OVERFLOW)
          && now.get(now.size() - 1) instanceof FsChange c && c.path().equals("last" + (more.get() - 1));
    });
    List<FsValue> all = List.copyOf(seen);
    assertInstanceOf(WatchStarted.class, all.get(0));
    long regular = all.stream().filter(v -> v instanceof FsChange c && c.kind() == FsChange.Kind.CREATED).count();
    long dropped = all.stream().mapToLong(v -> v instanceof FsChange c && c.kind() == FsChange.Kind.OVERFLOW ? c.dropped() : 0).sum();
    assertTrue(dropped > 0 && regular < pushed, "dropped " + dropped + ", delivered " + regular);
    assertEquals(pushed + more.get(), regular + dropped, "every event is delivered or counted");
    // in order: what got through of the burst is its beginning
    assertEquals(new FsChange(FsChange.Kind.CREATED, "f0", 0), all.get(1));
  }
}
