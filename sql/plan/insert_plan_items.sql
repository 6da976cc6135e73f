-- insert_plan_items: append a plan's items from the registered Arrow table `new_plan_items`.
INSERT INTO plan_items (plan_id, seq, request_id, batch, side)
SELECT plan_id, seq, request_id, batch, side FROM new_plan_items;
