package dev.flotilla.vm.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.InetAddress;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.xbill.DNS.AAAARecord;
import org.xbill.DNS.ARecord;
import org.xbill.DNS.CNAMERecord;
import org.xbill.DNS.DClass;
import org.xbill.DNS.Flags;
import org.xbill.DNS.Message;
import org.xbill.DNS.Name;
import org.xbill.DNS.Opcode;
import org.xbill.DNS.Rcode;
import org.xbill.DNS.Record;
import org.xbill.DNS.Section;
import org.xbill.DNS.Type;

/**
 * {@link DnsMessages} on what a sandbox and an upstream server can send. Both are hostile: the
 * guest writes its queries, and a tenant can run the authoritative server of a name it is allowed
 * to resolve, so the answers too. A query is either refused with a DNS error the guest can read,
 * or accepted as one plain question that goes upstream re-encoded and parses back the same. An
 * answer is either dropped or grants only addresses of A/AAAA records, in its answer section, of
 * the question's own name or of a name reached from it through CNAMEs there; never an address
 * the answer states for any other name. Nothing else may be thrown.
 *
 * <p>Seeds and regression inputs: {@code src/test/resources/.../DnsMessagesFuzzTestInputs/messages/};
 * longer runs: {@code scripts/fuzz.sh dns-messages}.
 */
class DnsMessagesFuzzTest {

  /** The questions an answer is fuzzed against: names a sandbox may ask, of each address type. */
  private static final List<String> NAMES = List.of("api.flotilla.test", "a.b.c.example.org", "x");

  /** Both targets in one, so that one fuzzing JVM covers them: the first byte picks. */
  @FuzzTest(maxDuration = "10s")
  void messages(FuzzedDataProvider data) throws Exception {
    if (data.consumeBoolean()) {
      query(data.consumeRemainingAsBytes());
    } else {
      answer(data);
    }
  }

  private static void query(byte[] wire) throws Exception {
    DnsMessages.Query q;
    try {
      q = DnsMessages.parseQuery(wire);
    } catch (DnsMessages.Rejected r) {
      assertTrue(r.rcode == Rcode.FORMERR || r.rcode == Rcode.NOTIMP || r.rcode == Rcode.REFUSED, "rcode " + r.rcode);
      assertNotNull(r.getMessage(), "a refusal says why");
      if (r.query != null) {
        Message reply = new Message(DnsMessages.error(r.query, r.rcode));
        assertTrue(reply.getHeader().getFlag(Flags.QR), "the error is a response");
        assertEquals(r.query.getHeader().getID(), reply.getHeader().getID(), "the error goes back under the query's id");
        assertEquals(r.rcode, reply.getRcode());
      }
      return;
    }
    Message m = q.message();
    assertFalse(m.getHeader().getFlag(Flags.QR));
    assertEquals(Opcode.QUERY, m.getHeader().getOpcode());
    assertEquals(1, m.getHeader().getCount(Section.QUESTION));
    assertEquals(0, m.getHeader().getCount(Section.ANSWER) + m.getHeader().getCount(Section.AUTHORITY));
    Record question = m.getQuestion();
    assertEquals(DClass.IN, question.getDClass());
    assertNotEquals(Type.AXFR, q.type());
    assertNotEquals(Type.IXFR, q.type());
    assertEquals(DnsMessages.text(question.getName()), q.name());
    assertEquals(q.name().toLowerCase(java.util.Locale.ROOT), q.name());

    // what goes upstream is the same one question, under the node's id
    int id = q.id() ^ 0x5a5a;
    DnsMessages.Query again = DnsMessages.parseQuery(DnsMessages.upstream(q, id));
    assertEquals(id, again.id());
    assertEquals(q.name(), again.name());
    assertEquals(q.type(), again.type());
  }

  private static void answer(FuzzedDataProvider data) throws Exception {
    Name name = Name.fromString(data.pickValue(NAMES) + ".");
    int type = data.pickValue(new int[] {Type.A, Type.AAAA, Type.TXT});
    DnsMessages.Query q = DnsMessages.parseQuery(Message.newQuery(Record.newRecord(name, type, DClass.IN)).toWire());
    int id = data.consumeInt(0, 0xffff);
    byte[] wire = data.consumeBoolean() ? data.consumeRemainingAsBytes() : framed(q, id, data);

    DnsMessages.Answer a;
    try {
      a = DnsMessages.parseAnswer(q, id, wire);
    } catch (IOException dropped) {
      return;
    }
    Message m = new Message(wire); // parseAnswer took it, so it parses
    assertTrue(m.getHeader().getFlag(Flags.QR), "an answer taken is a response");
    assertEquals(id, m.getHeader().getID(), "an answer taken has the query's id");
    assertEquals(name, m.getQuestion().getName(), "an answer taken is to the query's question");
    assertTrue(a.addresses().size() <= DnsMessages.MAX_ADDRESSES, a.addresses().size() + " addresses");
    assertEquals(a.addresses().size(), new HashSet<>(a.addresses()).size(), "an address granted twice");
    if (a.addresses().isEmpty()) return;
    assertEquals(Rcode.NOERROR, a.rcode());
    assertFalse(a.truncated());
    assertTrue(a.ttlSeconds() >= 0, "ttl " + a.ttlSeconds());

    Set<Name> reached = reached(name, m.getSection(Section.ANSWER));
    Set<InetAddress> stated = new HashSet<>();
    for (Record r : m.getSection(Section.ANSWER)) {
      if (r.getDClass() != DClass.IN || !reached.contains(r.getName())) continue;
      if (r instanceof ARecord x) stated.add(x.getAddress());
      if (r instanceof AAAARecord x) stated.add(x.getAddress());
    }
    for (InetAddress granted : a.addresses()) {
      if (!stated.contains(granted)) {
        fail(granted + " granted, but the answer states it for no name reached from " + name + " (reached: " + reached + ")");
      }
    }
  }

  /**
   * Names reached from {@code from} through the answer section's CNAMEs of class IN, within
   * {@link DnsMessages#MAX_CNAME_HOPS} hops, whichever CNAME of a name is taken: a superset of
   * what the parser may follow.
   */
  private static Set<Name> reached(Name from, List<Record> answers) {
    Set<Name> reached = new HashSet<>(Set.of(from));
    Set<Name> frontier = Set.of(from);
    for (int hop = 0; hop < DnsMessages.MAX_CNAME_HOPS && !frontier.isEmpty(); hop++) {
      Set<Name> next = new HashSet<>();
      for (Record r : answers) {
        if (r instanceof CNAMERecord c && r.getDClass() == DClass.IN && frontier.contains(r.getName()) && reached.add(c.getTarget())) {
          next.add(c.getTarget());
        }
      }
      frontier = next;
    }
    return reached;
  }

  /**
   * A response header and the query's question, then the fuzzer's bytes as its records: the
   * fuzzer spends its time on records (names, compression pointers into the question, CNAME
   * chains, counts that lie) rather than on finding a header that is accepted.
   */
  private static byte[] framed(DnsMessages.Query q, int id, FuzzedDataProvider data) {
    Message head = new Message(id);
    head.getHeader().setFlag(Flags.QR);
    head.getHeader().setRcode(data.consumeBoolean() ? Rcode.NOERROR : data.consumeInt(0, 15));
    if (data.consumeInt(0, 15) == 0) head.getHeader().setFlag(Flags.TC);
    head.addRecord(q.message().getQuestion(), Section.QUESTION);
    byte[] start = head.toWire();
    int answers = data.consumeInt(0, 80);
    int authority = data.consumeInt(0, 3);
    int additional = data.consumeInt(0, 3);
    start[6] = (byte) (answers >>> 8);
    start[7] = (byte) answers;
    start[8] = (byte) (authority >>> 8);
    start[9] = (byte) authority;
    start[10] = (byte) (additional >>> 8);
    start[11] = (byte) additional;
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.writeBytes(start);
    out.writeBytes(data.consumeRemainingAsBytes());
    return out.toByteArray();
  }
}
