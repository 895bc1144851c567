-- The demo products in the shoppers' language; a product the shop has renamed keeps its name.
UPDATE product SET name = '龙井绿茶 250g', description = '杭州明前龙井，春茶新采，真空包装。'
    WHERE product_id = '100010090092' AND name = 'Green Tea, 250 g';
UPDATE product SET name = '青瓷马克杯', description = '手工上釉青瓷马克杯，350 毫升，可用洗碗机清洗。'
    WHERE product_id = '100010090093' AND name = 'Ceramic Mug';
UPDATE product SET name = 'A5 点阵笔记本', description = 'A5 点阵笔记本，160 页 100 克纸，可平摊书写。'
    WHERE product_id = '100010090094' AND name = 'Notebook';
UPDATE product SET name = '晴雨伞', description = '便携防风晴雨伞，一键自动开合。'
    WHERE product_id = '100010090095' AND name = 'Umbrella';
UPDATE product SET description = '原项目的测试商品：一份即时发货的数字小礼物。'
    WHERE product_id = '100010090091' AND name = '测试商品';
