"""Hot reload: the specs directory is watched; bots start, change and stop
live, by diff, losing nothing."""

import os
import shutil
import signal
import sqlite3
import unittest

from harness import BotTest

BOT = 701


def hello(text, extra=""):
    return """token: ${T}
flows:
  - entry_cmd: /start
    description: Say hello
    steps: [{reply: "%s"}]
%s""" % (text, extra)


ORDER = """
  - entry_cmd: /order
    steps:
      - ask: "Name?"
        save: name
      - ask: "Qty?"
        save: qty
      - reply: "Order {{name}} x{{qty}}"
"""


class ReloadTest(BotTest):
    def setUp(self):
        super().setUp()
        self.tok = self.token(BOT)

    def start(self, specs):
        d = self.daemon(specs, env={"T": self.tok})
        return d

    def write(self, d, name, text, atomic=True):
        path = os.path.join(d.specs_dir, name)
        if atomic:  # how editors save: a temp file renamed over the old one
            tmp = os.path.join(d.specs_dir, ".%s.tmp" % name)
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, path)
        else:
            with open(path, "w") as f:
                f.write(text)

    def ask(self, text="/start", user=5):
        before = self.fb.sent(BOT)["last_seq"]
        self.fb.message(BOT, text, user_id=user)
        calls = self.fb.wait_sent(BOT, 1, method="sendMessage", after=before)
        return calls[0]["params"]["text"]

    def db_row(self, d, bot):
        db = sqlite3.connect(d.db)
        try:
            return db.execute("SELECT source, content_hash, last_error FROM bots WHERE id=?",
                              (bot,)).fetchone()
        finally:
            db.close()

    def test_a_menu_edited_while_the_first_is_published_is_the_one_left(self):
        # the start's setMyCommands is slow; the menu changes meanwhile
        self.fb.add_faults(BOT, {"method": "setMyCommands", "delay_ms": 1500, "count": 1})
        d = self.start({"hi.yaml": hello("v1")})
        self.wait_faults_taken(BOT)
        mark = len(d.lines)
        self.write(d, "hi.yaml", hello("v1").replace("Say hello", "Say hi"))
        d.wait_log(r"bot hi: spec reloaded", start=mark)
        d.wait_log(r"bot hi: published its command menu", start=mark)
        d.wait_log(r"bot hi: published its new command menu", start=mark)
        # the newer menu went last: two calls at once could end either way
        self.assertEqual(self.fb.state(BOT)["commands"],
                         [{"command": "start", "description": "Say hi"}])
        self.assertEqual(len(self.fb.sent(BOT, method="setMyCommands")["calls"]), 2)
        self.assertEqual(self.ask(), "v1")
        # the database knows what was published last: a restart sends nothing
        self.assertEqual(d.stop(), 0)
        d.restart()
        self.wait_polling(BOT)
        self.assertEqual(self.ask(), "v1")
        self.assertEqual(len(self.fb.sent(BOT, method="setMyCommands")["calls"]), 2)
        self.assertEqual(d.stop(), 0)

    def test_a_menu_edited_while_an_edit_is_published_waits_for_it(self):
        # (calls get 10 s here, so that the slow one below is not abandoned)
        d = self.daemon({"hi.yaml": hello("v1")}, env={"T": self.tok},
                        args=["--request-timeout", "10"])
        self.wait_polling(BOT)
        # an edit's setMyCommands is slow (4 s: the two edits below come
        # well within it); the menu changes twice meanwhile
        self.fb.add_faults(BOT, {"method": "setMyCommands", "delay_ms": 4000, "count": 1})
        mark = len(d.lines)
        self.write(d, "hi.yaml", hello("v1").replace("Say hello", "Say hi"))
        d.wait_log(r"bot hi: spec reloaded", start=mark)
        self.wait_faults_taken(BOT)
        for text in ("Say hey", "Say yo"):
            mark = len(d.lines)
            self.write(d, "hi.yaml", hello("v1").replace("Say hello", text))
            d.wait_log(r"bot hi: spec reloaded", start=mark)
        # the slow call was not cancelled: it ended, then the last menu went
        # (the one in between was never sent)
        self.fb.wait_sent(BOT, 3, method="setMyCommands")
        calls = self.fb.sent(BOT, method="setMyCommands")["calls"]
        self.assertEqual([c["params"]["commands"][0]["description"] for c in calls],
                         ["Say hello", "Say hi", "Say yo"])
        self.assertEqual(self.fb.state(BOT)["commands"],
                         [{"command": "start", "description": "Say yo"}])
        self.assertEqual(d.stop(), 0)

    def test_without_inotify_the_directory_is_rescanned(self):
        # every inotify watch fails, as when the system's limit is reached
        env = {"T": self.tok, "LD_PRELOAD": os.environ["NO_INOTIFY"],
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"}
        d = self.daemon({}, env=env)
        d.wait_log(r"cannot watch .*specs \(no space left on device\): rescanning it every 2 s instead")
        d.wait_log(r"0 spec files in .*")
        self.write(d, "hi.yaml", hello("v1"))
        self.wait_polling(BOT, timeout=10)
        self.assertEqual(self.ask(), "v1")
        mark = len(d.lines)
        self.write(d, "hi.yaml", hello("v2"))
        d.wait_log(r"bot hi: spec reloaded", start=mark, timeout=10)
        self.assertEqual(self.ask(), "v2")
        mark = len(d.lines)
        os.unlink(os.path.join(d.specs_dir, "hi.yaml"))
        d.wait_log(r"bot hi: its spec file is gone", start=mark, timeout=10)
        self.assertEqual(d.stop(), 0)

    def test_add_change_break_fix_delete(self):
        d = self.start({})
        d.wait_log(r"0 spec files in .* \(watched\)")
        # add: a new file starts a bot
        self.write(d, "hi.yaml", hello("v1"))
        self.wait_polling(BOT)
        self.assertEqual(self.ask(), "v1")
        # change by atomic rename
        mark = len(d.lines)
        self.write(d, "hi.yaml", hello("v2"))
        d.wait_log(r"bot hi: spec reloaded", start=mark)
        self.assertEqual(self.ask(), "v2")
        # change in place
        mark = len(d.lines)
        self.write(d, "hi.yaml", hello("v3"), atomic=False)
        d.wait_log(r"bot hi: spec reloaded", start=mark)
        self.assertEqual(self.ask(), "v3")
        # break it: invalid YAML keeps v3 running, the error says where
        mark = len(d.lines)
        self.write(d, "hi.yaml", hello("v4") + "  - [unclosed\n")
        d.wait_log(r"hi\.yaml:\d+:\d+: YAML syntax error", start=mark)
        d.wait_log(r"bot hi: .*keeping the last good version running", start=mark)
        self.assertEqual(self.ask(), "v3")
        # valid YAML, schema error: same
        mark = len(d.lines)
        self.write(d, "hi.yaml", hello("v5").replace("steps:", "stepz:"))
        d.wait_log(r"hi\.yaml:5:5: unknown key 'stepz' in a flow \(did you mean 'steps'\?\)",
                   start=mark)
        self.assertEqual(self.ask(), "v3")
        # the bots table records it (written by the database thread: read
        # it once the daemon has stopped and flushed)
        self.assertEqual(d.stop(), 0)
        self.assertRegex(self.db_row(d, "hi")[2],
                         r"hi\.yaml:3:5: a flow needs 'steps' \(and 1 more error\)$")
        d.restart()
        d.wait_log(r"bot hi: .*: not started", start=mark)
        # fix it
        mark = len(d.lines)
        self.write(d, "hi.yaml", hello("v6"))
        d.wait_log(r"bot hi: polling as", start=mark)
        self.assertEqual(self.ask(), "v6")
        # delete: the bot stops polling
        mark = len(d.lines)
        os.unlink(os.path.join(d.specs_dir, "hi.yaml"))
        d.wait_log(r"bot hi: its spec file is gone", start=mark)
        self.fb.wait_state(BOT, held_polls=0)  # its long poll was dropped
        self.assertEqual(d.stop(), 0)
        self.assertEqual(self.db_row(d, "hi")[2], "spec file removed")

    def test_same_size_rewrite_keeping_the_stat_is_seen(self):
        # a rewrite in place of the same size within one clock tick keeps
        # size, inode and mtime: forced here with utime
        d = self.start({})
        d.wait_log(r"0 spec files in .* \(watched\)")
        self.write(d, "hi.yaml", hello("v1"), atomic=False)  # read at once
        self.wait_polling(BOT)
        self.assertEqual(self.ask(), "v1")
        path = os.path.join(d.specs_dir, "hi.yaml")
        st = os.stat(path)
        mark = len(d.lines)
        with open(path, "r+") as f:
            f.write(hello("v2"))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        d.wait_log(r"bot hi: spec reloaded", start=mark)
        self.assertEqual(self.ask(), "v2")
        self.assertEqual(d.stop(), 0)

    def test_unchanged_content_does_nothing(self):
        d = self.start({"hi.yaml": hello("same")})
        self.wait_polling(BOT)
        mark = len(d.lines)
        self.write(d, "hi.yaml", hello("same"))  # new inode, same bytes
        self.write(d, "notes.txt", "not a spec")
        self.write(d, "hi.yaml~", "editor backup")
        # a SIGHUP-forced rescan is the event that proves the others were seen
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"SIGHUP: rescanning", start=mark)
        self.assertEqual(self.ask(), "same")
        self.assertFalse(any("spec reloaded" in l for l in d.lines[mark:]))
        self.assertEqual(d.stop(), 0)

    def test_user_midway_keeps_answers_across_a_change(self):
        d = self.start({"shop.yaml": hello("hi", ORDER)})
        self.wait_polling(BOT)
        self.assertEqual(self.ask("/order", user=9), "Name?")
        self.assertEqual(self.ask("Ann", user=9), "Qty?")
        mark = len(d.lines)
        self.write(d, "shop.yaml", hello("hello there", ORDER))  # unrelated change
        d.wait_log(r"bot shop: spec reloaded", start=mark)
        self.assertEqual(self.ask("3", user=9), "Order Ann x3")
        self.assertEqual(self.ask(user=9), "hello there")
        self.assertEqual(d.stop(), 0)

    def test_burst_of_changes_ends_in_the_last_state(self):
        d = self.start({"hi.yaml": hello("v0")})
        self.wait_polling(BOT)
        for i in range(1, 101):
            self.write(d, "hi.yaml", hello("burst %d" % i))
        # the last write wins: wait until the bot answers with it
        for _ in range(50):
            if self.ask() == "burst 100":
                break
            d.wait_log(r"bot hi: spec reloaded", start=len(d.lines) - 1)
        self.assertEqual(self.ask(), "burst 100")
        self.assertEqual(d.stop(), 0)

    def test_directory_removed_and_recreated(self):
        d = self.start({"hi.yaml": hello("before")})
        self.wait_polling(BOT)
        saved = os.path.join(d.dir, "saved")
        mark = len(d.lines)
        os.rename(d.specs_dir, saved)
        d.wait_log(r"bot hi: its spec file is gone", start=mark)
        os.mkdir(d.specs_dir)
        shutil.copy(os.path.join(saved, "hi.yaml"), os.path.join(d.specs_dir, "hi.yaml"))
        self.write(d, "hi.yaml", hello("after"))
        d.wait_log(r"bot hi: polling as", start=mark)
        self.assertEqual(self.ask(), "after")
        # and the new directory is watched
        mark = len(d.lines)
        self.write(d, "hi.yaml", hello("watched"))
        d.wait_log(r"bot hi: spec reloaded", start=mark)
        self.assertEqual(self.ask(), "watched")
        self.assertEqual(d.stop(), 0)

    def test_token_change_restarts_the_bot(self):
        other = self.token(702)
        d = self.daemon({"hi.yaml": hello("one")}, env={"T": self.tok, "T2": other})
        self.wait_polling(BOT)
        mark = len(d.lines)
        self.write(d, "hi.yaml", hello("two").replace("${T}", "${T2}"))
        d.wait_log(r"bot hi: its token changed: restarting the bot", start=mark)
        self.wait_polling(702)
        self.fb.message(702, "/start", user_id=5)
        self.assertEqual(self.texts(702, 1), ["two"])
        self.assertEqual(d.stop(), 0)

    def test_new_file_with_a_taken_token_waits_for_it(self):
        d = self.start({"a.yaml": hello("A")})
        self.wait_polling(BOT)
        mark = len(d.lines)
        self.write(d, "b.yaml", hello("B"))
        d.wait_log(r"bot b: not started: bot a already uses the same token", start=mark)
        os.unlink(os.path.join(d.specs_dir, "a.yaml"))
        d.wait_log(r"bot b: its token is free now: starting", start=mark)
        d.wait_log(r"bot b: polling as", start=mark)
        self.assertEqual(self.ask(), "B")
        self.assertEqual(d.stop(), 0)

    def test_waiting_file_removed_with_the_owner(self):
        # b waits for a's token; both files go in one change: the token
        # must be free for the next file that uses it
        d = self.start({"a.yaml": hello("A"), "b.yaml": hello("B")})
        d.wait_log(r"bot b: not started: bot a already uses the same token")
        self.wait_polling(BOT)
        mark = len(d.lines)
        os.unlink(os.path.join(d.specs_dir, "a.yaml"))
        os.unlink(os.path.join(d.specs_dir, "b.yaml"))
        d.wait_log(r"bot a: its spec file is gone", start=mark)
        d.wait_log(r"bot b: its spec file is gone", start=mark)
        self.write(d, "c.yaml", hello("C"))
        d.wait_log(r"bot c: polling as", start=mark)
        self.assertNotIn("bot c: not started", "\n".join(d.lines[mark:]))
        self.assertEqual(self.ask(), "C")
        self.assertEqual(d.stop(), 0)

    def test_a_removed_bot_confirms_its_offset_with_allowed_updates(self):
        d = self.start({"a.yaml": hello("A")})
        self.wait_polling(BOT)
        self.assertEqual(self.ask(), "A")
        self.wait_polling(BOT)
        polls = self.fb.state(BOT)["get_updates_calls"]
        os.unlink(os.path.join(d.specs_dir, "a.yaml"))
        # its last getUpdates confirms the offset, and (like every call)
        # names the kinds of update: Telegram keeps the last list it got
        st = self.fb.wait_state(BOT, min_get_updates_calls=polls + 1)
        self.assertEqual(st["last_limit"], 1)
        self.assertEqual(st["last_timeout"], 0)
        self.assertTrue(st["last_had_allowed_updates"])
        self.assertEqual(st["allowed_updates"], ["message", "callback_query"])
        self.assertEqual(d.stop(), 0)

    def test_renamed_file_does_not_get_handled_updates_again(self):
        d = self.start({"a.yaml": hello("A")})
        self.wait_polling(BOT)
        # a handles an update; its next poll, which would confirm it, is
        # never answered (a dropped one libcurl would send again at once):
        # the update is committed but not confirmed to Telegram
        self.fb.add_faults(BOT, {"method": "getUpdates", "hang": True})
        self.fb.message(BOT, "/start", user_id=5, first_name="Ann")
        self.assertEqual(self.texts(BOT, 1), ["A"])
        self.wait_faults_taken(BOT)
        # the file is renamed: the bot has a new id, the same token
        mark = len(d.lines)
        os.rename(os.path.join(d.specs_dir, "a.yaml"), os.path.join(d.specs_dir, "b.yaml"))
        d.wait_log(r"bot b: polling as", start=mark)
        self.fb.message(BOT, "/start", user_id=6, first_name="Bob")
        # b answers Bob's update only: Ann's was confirmed by a on its way out
        self.assertEqual(self.texts(BOT, 2), ["A", "A"])
        sent = self.fb.sent(BOT, method="sendMessage")["calls"]
        self.assertEqual([c["params"]["chat_id"] for c in sent], [5, 6])
        self.assertEqual(d.stop(), 0)

    def test_dropped_duplicate_takes_over_when_the_first_file_goes(self):
        # hi.json defines bot hi; hi.yaml (later in name order) is ignored.
        # Once hi.json is deleted, hi.yaml is the only file of bot hi: its
        # content must run, not the deleted file's.
        js = ('{"token": "${T}", "flows": [{"entry_cmd": "/start", '
              '"description": "Say hello", "steps": [{"reply": "from json"}]}]}')
        d = self.start({"hi.json": js})
        self.wait_polling(BOT)
        self.assertEqual(self.ask(), "from json")
        mark = len(d.lines)
        self.write(d, "hi.yaml", hello("from yaml"))
        d.wait_log(r"hi\.yaml: ignored: another file already defines bot 'hi'", start=mark)
        mark = len(d.lines)
        os.unlink(os.path.join(d.specs_dir, "hi.json"))
        # a later, broken file proves that a rescan saw the unlink
        self.write(d, "zz.yaml", "flows: [unclosed\n")
        d.wait_log(r"zz\.yaml:\d+:\d+: ", start=mark)
        self.assertEqual(self.ask(), "from yaml")
        self.assertEqual(d.stop(), 0)

    def test_file_added_before_the_watch_starts_is_loaded(self):
        # hi.yaml appears after the first scan listed the directory but
        # before the inotify watch exists: no event will ever report it
        env = {"T": self.tok, "LD_PRELOAD": os.environ["LATE_FILE_SHIM"],
               "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0",
               "LATE_TEXT": hello("late")}
        d = self.daemon({}, env=env, start=False)
        d.env["LATE_FILE"] = os.path.join(d.specs_dir, "hi.yaml")
        d.start()
        # the periodic rescan would find it only after 30 s; the watch
        # starts before the first scan, which then lists it
        self.wait_polling(BOT, timeout=10)
        self.assertEqual(self.ask(), "late")
        self.assertEqual(d.stop(), 0)

    def test_directory_recreated_with_the_same_inode_is_watched(self):
        d = self.start({"hi.yaml": hello("before")})
        self.wait_polling(BOT)
        ino = os.stat(d.specs_dir).st_ino
        # rm -rf + mkdir while the daemon is stopped: its next scan sees a
        # directory again (no "missing" in between); ext4 gives the new
        # directory the inode number of the old one
        d.proc.send_signal(signal.SIGSTOP)
        try:
            shutil.rmtree(d.specs_dir)
            os.mkdir(d.specs_dir)
        finally:
            d.proc.send_signal(signal.SIGCONT)
        if os.stat(d.specs_dir).st_ino != ino:
            self.skipTest("the file system gave the new directory another inode")
        mark = len(d.lines)
        d.wait_log(r"bot hi: its spec file is gone", start=mark)
        # the new directory must be watched: a new file starts its bot at
        # once (not at the next 30 s periodic rescan)
        self.write(d, "hi.yaml", hello("after"))
        self.wait_polling(BOT, timeout=10)
        self.assertEqual(self.ask(), "after")
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main()
