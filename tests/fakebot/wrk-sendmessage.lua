-- wrk script: POST sendMessage with a JSON body and an inline keyboard, for
-- measuring fakebot (see README.md, "Throughput").
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"chat_id":100,"text":"Hello from wrk, this is a reply","reply_markup":{"inline_keyboard":[[{"text":"Yes","callback_data":"y"},{"text":"No","callback_data":"n"}]]}}'
