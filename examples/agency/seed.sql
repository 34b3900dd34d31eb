-- What the portal held before latchkey took over the example: the portal's own admin
-- (not latchkey's: out of scope, never changed), Milton (managed, since offboarded),
-- and a role someone added by hand to Frank (drift, pruned).
INSERT INTO users (email, display_name, active, managed_by) VALUES
    ('root@portal.example', 'Portal Admin', TRUE, NULL),
    ('milton@initech.example', 'Milton Waddams', TRUE, 'latchkey'),
    ('frank@acme.example', 'Frank Field', TRUE, 'latchkey');
INSERT INTO user_roles (user_id, role) VALUES (1, 'superuser'), (2, 'initech:viewer'), (3, 'acme:viewer'), (3, 'acme:finance');
