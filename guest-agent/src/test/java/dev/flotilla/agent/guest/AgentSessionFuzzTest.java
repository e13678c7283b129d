package dev.flotilla.agent.guest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import com.google.protobuf.InvalidProtocolBufferException;
import dev.flotilla.agent.protocol.frame.Frame;
import dev.flotilla.agent.protocol.frame.FrameCodec;
import dev.flotilla.agent.protocol.frame.FrameConnection;
import dev.flotilla.agent.protocol.frame.FrameType;
import dev.flotilla.agent.protocol.frame.MemoryPipe;
import dev.flotilla.agent.protocol.frame.ProtocolException;
import dev.flotilla.agent.protocol.v1.Error;
import dev.flotilla.agent.protocol.v1.HandshakeRequest;
import dev.flotilla.agent.protocol.v1.Request;
import dev.flotilla.agent.protocol.v1.Response;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * The guest agent's session against a hostile host: one in-process agent (as {@link
 * InProcessAgentTest} runs it) gets whatever frames the fuzzer makes on a {@link MemoryPipe}:
 * Requests that are or are not protobuf, of every kind, before and after a handshake, on any
 * stream, WINDOW_UPDATEs, raw garbage. Whatever it gets, the connection ends once the host hangs
 * up, its reader never fails (the agent never crashes), every answer is a {@code Response} on a
 * stream the host opened, at most one per request, and no request makes the agent fail with
 * INTERNAL: a bad request is refused with a code that says what is wrong with it.
 *
 * <p>What reaches the machine is made harmless first: an exec runs {@code true} (its env,
 * working dir, user, stdin, window and ring are the fuzzer's), file paths are moved under a
 * temporary directory with {@code ..} defused, shutdown grace and read waits are capped.
 */
class AgentSessionFuzzTest {

  private static final String SANDBOX = "sb-00000000000000f7";
  private static final long INCARNATION = 7;
  private static final Path FILES = tempDir();
  private static final GuestAgent AGENT = new GuestAgent(AgentConfig.of(SANDBOX, INCARNATION), powerOff -> { },
      code -> { });

  static {
    // The agent warns about every legacy handshake: keep the fuzzer's console to errors.
    Logger.getLogger("").setLevel(Level.SEVERE);
  }

  @FuzzTest(maxDuration = "10s")
  void requests(FuzzedDataProvider data) throws Exception {
    MemoryPipe toAgent = new MemoryPipe(1 << 20);
    MemoryPipe toHost = new MemoryPipe(4 << 20);
    CompletableFuture<Throwable> served = AGENT.serveAsync(toAgent.input(), toHost.output(), "fuzz");
    Map<Integer, Integer> requestsPerStream = new HashMap<>();
    OutputStream host = toAgent.output();
    try {
      if (data.consumeBoolean()) {
        // Past the handshake at once, so that most inputs reach the calls behind it.
        write(host, 1, FrameType.REQUEST, 0, Request.newBuilder().setHandshake(HandshakeRequest.newBuilder()
            .setSandboxId(SANDBOX).setIncarnation(INCARNATION)).build().toByteArray());
        requestsPerStream.merge(1, 1, Integer::sum);
      }
      while (data.remainingBytes() > 0) {
        int form = data.consumeInt(0, 9);
        if (form == 0) {
          host.write(data.consumeBytes(data.consumeInt(0, 64)));
          requestsPerStream.clear(); // framing is lost: any stream may have seen a request
          requestsPerStream.put(-1, 0);
          continue;
        }
        int stream = data.consumeInt(0, 8);
        if (form == 1) {
          write(host, stream, FrameType.WINDOW_UPDATE, data.consumeInt(0, 3),
              ByteBuffer.allocate(4).putInt(data.consumeInt()).array());
          continue;
        }
        if (form == 2) {
          write(host, stream, FrameType.DATA, data.consumeInt(0, 3), data.consumeBytes(data.consumeInt(0, 32)));
          continue;
        }
        byte[] payload = form <= 4 ? wrap(data.consumeInt(1, 19), data.consumeBytes(data.consumeInt(0, 128)))
            : form <= 7 ? structured(data).toByteArray()
            : data.consumeBytes(data.consumeInt(0, 128));
        write(host, stream, FrameType.REQUEST, 0, harmless(payload));
        requestsPerStream.merge(stream, 1, Integer::sum);
      }
    } catch (IOException e) {
      // the agent hung up (GOAWAY after a protocol error or a refused handshake)
    }
    host.close();

    byte[] answers = readAll(toHost.input());
    Throwable cause;
    try {
      cause = served.get(10, TimeUnit.SECONDS);
    } catch (TimeoutException e) {
      fail("the agent's connection did not end within 10 s of the host hanging up");
      return;
    }
    assertTrue(cause == null || cause instanceof ProtocolException || cause instanceof FrameConnection.GoAwayException,
        "the session ended with " + cause + ": its reader failed");

    FrameCodec codec = new FrameCodec(Integer.MAX_VALUE - Frame.HEADER_SIZE);
    ByteArrayInputStream in = new ByteArrayInputStream(answers);
    Map<Integer, Integer> answersPerStream = new HashMap<>();
    Frame f;
    while ((f = codec.read(in)) != null) {
      if (f.type() == FrameType.GOAWAY) {
        assertEquals(0, in.available(), "nothing after a GOAWAY");
        break;
      }
      assertNotEquals(FrameType.REQUEST, f.type(), "the agent never sends requests");
      if (f.type() != FrameType.RESPONSE) continue; // DATA of an exec's (empty) output
      Response r;
      try {
        r = Response.parseFrom(f.payload());
      } catch (InvalidProtocolBufferException e) {
        fail("the agent sent a RESPONSE that is no Response: " + e.getMessage());
        return;
      }
      int n = answersPerStream.merge(f.streamId(), 1, Integer::sum);
      if (!requestsPerStream.containsKey(-1)) {
        assertTrue(n <= requestsPerStream.getOrDefault(f.streamId(), 0),
            "answer " + n + " on stream " + f.streamId() + ", which carried " + requestsPerStream.get(f.streamId())
                + " requests");
      }
      if (r.hasError()) {
        assertNotEquals(Error.Code.INTERNAL, r.getError().getCode(),
            "a request made the agent fail instead of being refused: " + r.getError().getMessage());
      }
    }
  }

  /** A well-formed request of any kind with fuzzed fields: reaches the calls' own checks quickly. */
  private static Request structured(FuzzedDataProvider data) {
    Request.Builder b = Request.newBuilder();
    String execId = data.consumeBoolean() ? "e" + data.consumeInt(0, 3) : data.consumeString(8);
    switch (data.consumeInt(0, 19)) {
      case 0 -> b.getHandshakeBuilder().setSandboxId(data.consumeBoolean() ? SANDBOX : data.consumeString(24))
          .setIncarnation(data.consumeBoolean() ? INCARNATION : data.consumeLong())
          .setLeaseMs(data.consumeBoolean() ? 0 : data.consumeInt())
          .setProtocolVersion(data.consumeInt());
      case 1 -> {
        var e = b.getExecProcessBuilder().setExecId(execId).setStdin(data.consumeBoolean())
            .setInitialWindow(data.consumeInt()).setOutputRingBytes(data.consumeBoolean() ? 0 : data.consumeInt())
            .setWorkingDir(data.consumeBoolean() ? "" : data.consumeString(16))
            .setUser(data.consumeBoolean() ? "" : data.consumeString(16));
        int argc = data.consumeInt(0, 2);
        for (int i = 0; i < argc; i++) e.addArgv(data.consumeString(8));
        int envc = data.consumeInt(0, 2);
        for (int i = 0; i < envc; i++) e.putEnv(data.consumeString(8), data.consumeString(8));
        e.setTty(data.consumeBoolean()).setTtyRows(data.consumeInt()).setTtyCols(data.consumeInt()).setTerm(data.consumeString(8));
      }
      case 2 -> b.getWaitProcessBuilder().setExecId(execId);
      case 3 -> b.getSignalProcessBuilder().setExecId(execId).setSignal(data.consumeInt());
      case 4 -> b.getWriteStdinBuilder().setExecId(execId)
          .setData(com.google.protobuf.ByteString.copyFrom(data.consumeBytes(16)));
      case 5 -> b.getCloseStdinBuilder().setExecId(execId);
      case 6 -> b.getWriteFileBuilder().setPath(data.consumeString(24)).setOffset(data.consumeLong())
          .setData(com.google.protobuf.ByteString.copyFrom(data.consumeBytes(16))).setTruncate(data.consumeBoolean())
          .setMode(data.consumeInt()).setCreateParents(data.consumeBoolean());
      case 7 -> b.getReadFileBuilder().setPath(data.consumeString(24)).setOffset(data.consumeLong())
          .setLength(data.consumeInt());
      case 8 -> b.getStatsBuilder();
      case 9 -> b.getPingBuilder().setNonce(data.consumeLong());
      case 10 -> b.getShutdownBuilder().setGraceMillis(data.consumeInt()).setPowerOff(data.consumeBoolean());
      case 12 -> b.getListDirBuilder().setPath(data.consumeString(24)).setDepth(data.consumeInt())
          .setMaxEntries(data.consumeInt()).setStartAfter(data.consumeString(16));
      case 13 -> b.getStatBuilder().setPath(data.consumeString(24)).setFollowSymlinks(data.consumeBoolean());
      case 14 -> b.getMakeDirBuilder().setPath(data.consumeString(24)).setParents(data.consumeBoolean())
          .setMode(data.consumeInt());
      case 15 -> b.getRemoveBuilder().setPath(data.consumeString(24)).setRecursive(data.consumeBoolean());
      case 16 -> b.getRenameBuilder().setFrom(data.consumeString(24)).setTo(data.consumeString(24))
          .setOverwrite(data.consumeBoolean());
      case 17 -> b.getWatchDirBuilder().setPath(data.consumeString(24)).setRecursive(data.consumeBoolean())
          .setMaxQueuedEvents(data.consumeInt()).setInitialWindow(data.consumeInt());
      case 18 -> b.getCancelWatchBuilder().setStreamId(data.consumeInt(0, 8));
      case 19 -> b.getResizeTtyBuilder().setExecId(execId).setRows(data.consumeInt()).setCols(data.consumeInt());
      default -> b.getReadOutputBuilder().setExecId(execId).setOffset(data.consumeLong())
          .setMaxBytes(data.consumeInt()).setWaitMillis(data.consumeInt());
    }
    return b.build();
  }

  /** The request with what would touch this machine made harmless; other bytes unchanged. */
  private static byte[] harmless(byte[] payload) {
    Request r;
    try {
      r = Request.parseFrom(payload);
    } catch (InvalidProtocolBufferException e) {
      return payload; // the agent refuses it as malformed: exactly what is being tested
    }
    Request.Builder b = r.toBuilder();
    switch (r.getKindCase()) {
      case EXEC_PROCESS -> {
        if (r.getExecProcess().getArgvCount() > 0) {
          b.getExecProcessBuilder().clearArgv().addArgv("true");
        }
      }
      case WRITE_FILE -> b.getWriteFileBuilder().setPath(underFiles(r.getWriteFile().getPath()));
      case READ_FILE -> b.getReadFileBuilder().setPath(underFiles(r.getReadFile().getPath()));
      case LIST_DIR -> b.getListDirBuilder().setPath(underFiles(r.getListDir().getPath()));
      case STAT -> b.getStatBuilder().setPath(underFiles(r.getStat().getPath()));
      case MAKE_DIR -> b.getMakeDirBuilder().setPath(underFiles(r.getMakeDir().getPath()));
      case REMOVE -> b.getRemoveBuilder().setPath(underFiles(r.getRemove().getPath()));
      case RENAME -> b.getRenameBuilder().setFrom(underFiles(r.getRename().getFrom()))
          .setTo(underFiles(r.getRename().getTo()));
      case WATCH_DIR -> b.getWatchDirBuilder().setPath(underFiles(r.getWatchDir().getPath()));
      case SHUTDOWN -> b.getShutdownBuilder().setGraceMillis((int) Math.min(
          Integer.toUnsignedLong(r.getShutdown().getGraceMillis()), 50));
      case READ_OUTPUT -> b.getReadOutputBuilder().setWaitMillis((int) Math.min(
          Integer.toUnsignedLong(r.getReadOutput().getWaitMillis()), 100));
      default -> {
        return payload;
      }
    }
    return b.build().toByteArray();
  }

  /** An absolute path moves under {@link #FILES} with every {@code ..} defused; a relative one stays (refused). */
  private static String underFiles(String path) {
    if (!path.startsWith("/")) return path;
    return FILES + path.replace("..", "__");
  }

  private static void write(OutputStream out, int stream, FrameType type, int flags, byte[] payload) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(Frame.HEADER_SIZE + payload.length);
    b.putInt(payload.length).putInt(stream).put((byte) type.code()).put((byte) flags).put(payload);
    out.write(b.array());
  }

  /** A Request whose oneof field {@code field} holds {@code message} (arbitrary bytes, parsed leniently). */
  private static byte[] wrap(int field, byte[] message) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    varint(out, (field << 3) | 2);
    varint(out, message.length);
    out.writeBytes(message);
    return out.toByteArray();
  }

  private static void varint(ByteArrayOutputStream out, int v) {
    while ((v & ~0x7F) != 0) {
      out.write((v & 0x7F) | 0x80);
      v >>>= 7;
    }
    out.write(v);
  }

  private static byte[] readAll(InputStream in) throws IOException {
    CompletableFuture<byte[]> all = CompletableFuture.supplyAsync(() -> {
      try {
        return in.readAllBytes();
      } catch (IOException e) {
        throw new java.io.UncheckedIOException(e);
      }
    });
    try {
      return all.get(10, TimeUnit.SECONDS);
    } catch (Exception e) {
      in.close();
      fail("the agent did not close its side within 10 s: " + e);
      return new byte[0];
    }
  }

  private static Path tempDir() {
    try {
      Path dir = Files.createTempDirectory("flotilla-agent-fuzz");
      Runtime.getRuntime().addShutdownHook(new Thread(() -> {
        try (var files = Files.walk(dir)) {
          files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException ignored) {
          // best effort
        }
      }));
      return dir;
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }
}
